//! The agent's leaf work on a monitored server: sampling host metrics and tailing log files.
//!
//! - [`host`] — /proc and /sys counters → a [`host::Report`] (the body of `POST /ingest/v1/report`):
//!   facts, metric values named as in [`crate::config::model::METRICS`], processes. Linux only;
//!   elsewhere [`host::HostSampler::new`] returns [`host::HostError::Unsupported`].
//! - [`tail`] — follows log files by path or glob across rotation and truncation and reports the
//!   lines that contain a LogPolicy keyword, remembering its offsets across restarts.
//!
//! Neither module does networking or knows about serve; the `agent` command wires them up.

pub mod host;
pub mod tail;
