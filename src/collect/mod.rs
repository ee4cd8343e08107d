//! The collector: host metrics into serve, from agents (pushed) and node_exporter (scraped).
//!
//! - [`assign`] — what each agent runs besides sampling (down-checks, log rules), from the
//!   applied configuration; the wire types are in [`crate::protocol`].
//! - [`writer`] — the single writer: group-commits batches to the store, then updates [`live`]
//!   and hands them to the alert engine; [`caps`] first drops subjects beyond a server's caps.
//! - [`live`] — the newest report of every server, in memory, for the API and alert snapshots,
//!   with its [`columns`] (the figures the dashboard and the server list show) worked out once.
//! - [`prom`] parses the Prometheus text format; [`node_exporter`] reduces a parsed page to a
//!   [`node_exporter::Snapshot`] and turns two successive snapshots into metric values named as
//!   in [`crate::catalog`]. Both are pure.
//! - [`scrape`] — the node_exporter scraper: one loop per target, its reports into the writer.
//! - [`follow`] — with replicas on PostgreSQL: the reports other replicas stored, into [`live`]
//!   and the alert engine, every second.

pub mod assign;
pub mod caps;
pub mod columns;
pub mod follow;
pub mod live;
pub mod node_exporter;
pub mod prom;
pub mod scrape;
pub mod writer;
