//! Delivery: notifications out of the outbox — the senders (SMTP through lettre, HTTP SMS gateways
//! and webhooks through reqwest) and the worker that claims due rows, sends them, records every
//! attempt and retries with [`backoff`] while a channel fails — and the [`bounce`] scanner that
//! marks mails a channel's Maildir reports as bounced `failed`.
//!
//! Channel settings may reference `${ENV_NAME}`: they are expanded at send time
//! ([`crate::config::expand_env`]), never stored, and never logged.

pub mod bounce;
mod outbox;
mod send;

pub use bounce::{Bounce, parse_bounce, run_bounces};
pub use outbox::{BATCH, LEASE_MS, backoff, run_outbox};
pub use send::{SendError, Senders};
