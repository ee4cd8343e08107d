//! The agent on a monitored server: sampling host metrics, tailing log files, running
//! down-checks, and reporting all of it to the collector.
//!
//! - [`sampler`] — /proc and /sys counters → a [`crate::protocol::Report`]: facts, metric values
//!   named as in [`crate::catalog`], processes. Linux only; elsewhere
//!   [`sampler::HostSampler::new`] returns [`sampler::HostError::Unsupported`].
//! - [`sampling`] — runs the sampler on a thread of its own, so a blocking read never stalls the
//!   agent's loop.
//! - [`tail`] — follows log files by path or glob across rotation and truncation and reports the
//!   lines that contain a LogPolicy keyword, remembering its offsets across restarts; [`logs`]
//!   drives it for the rules the collector assigns.
//! - [`downcheck`] — runs the assigned down-checks.
//! - [`backlog`] — the bounded queues reports and events wait in; [`push`] — one request and
//!   what its answer means.
//! - [`run`] — the `agent` command's loop, which wires them up.
//!
//! `sampler` and `tail` do no networking and know nothing of serve.

pub mod backlog;
pub mod downcheck;
pub mod logs;
pub mod push;
pub mod run;
pub mod sampler;
pub mod sampling;
pub mod tail;
