//! Host metrics from outside the agent: Prometheus text parsing and node_exporter series → watchkeeper metrics (pure; no I/O).
//!
//! [`prom`] parses the text exposition format; [`node_exporter`] reduces a parsed page to a
//! [`node_exporter::Snapshot`] and turns two successive snapshots into
//! [`node_exporter::MetricValue`]s named as in [`crate::config::model::METRICS`]. The scraper that
//! fetches pages on schedule lives with the rest of the I/O and calls into these.

pub mod node_exporter;
pub mod prom;
