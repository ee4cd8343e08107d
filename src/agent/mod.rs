//! The agent on a monitored server: sampling host metrics, tailing log files, and reporting both.
//!
//! - [`host`] — /proc and /sys counters → a [`host::Report`] (the body of `POST /ingest/v1/report`):
//!   facts, metric values named as in [`crate::config::model::METRICS`], processes. Linux only;
//!   elsewhere [`host::HostSampler::new`] returns [`host::HostError::Unsupported`].
//! - [`tail`] — follows log files by path or glob across rotation and truncation and reports the
//!   lines that contain a LogPolicy keyword, remembering its offsets across restarts.
//! - [`run`] — the `agent` command: samples every interval into a bounded backlog, pushes it to
//!   the collector (`POST /ingest/v1/report`), retries with backoff, and runs the down-checks and
//!   log rules the collector's answers assign.
//!
//! `host` and `tail` do no networking and know nothing of serve; `run` wires them up.

pub mod host;
pub mod run;
pub mod tail;
