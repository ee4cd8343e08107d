//! watchkeeper: infrastructure monitoring as code.
//!
//! Teams keep their monitoring — projects, groups and roles, servers, port monitors,
//! down-check pairs, alert policies, channels, maintenance windows — as YAML in git.
//! `lint`, `plan` and `codeowners` check and explain a change before it merges.
//!
//! # Layout
//!
//! - [`config`] — raw serde types (`raw`), reading a tree with positions (`load`), the one
//!   `compile` step to the validated model (`model`), diagnostics, the keyed `diff`, schema.
//! - [`lint`] — rendering diagnostics: human (with snippet), JSON, GitHub annotations.
//! - [`plan`] — rendering a keyed diff between two trees; `plan::against` reads a running serve's
//!   objects and firing alerts through its status API.
//! - [`codeowners`] — CODEOWNERS from group and project roles.
//! - [`token`] — random tokens, their SHA-256, constant-time comparison.
//! - [`clock`] — the wall clock in epoch milliseconds.
//! - [`alert`] — the pure alert state machine (pending → firing → resolved, counted, events).
//! - [`probe`] — TCP checks on schedule (I/O only).
//! - [`collect`] — host metrics into serve: the agent protocol (`wire`), the group-committing
//!   `writer`, the `live` view of each server's newest report, the node_exporter `scrape`r with its
//!   pure Prometheus-text parser and metric mapping.
//! - [`store`] — SQLite / PostgreSQL: revisions, probe results, alert state and history, outbox,
//!   host samples with their 5-minute and hourly rollups.
//! - [`notify`] — recipients, templates (en, ko), SMTP / SMS / webhook senders, outbox worker.
//! - [`metrics`] — the Prometheus registry behind `/metrics`.
//! - [`api`] — the read-only status API and its token scopes; the agents' ingest endpoint.
//! - [`engine`] — the alert engine: probe results, host reports, down-check results and log hits →
//!   state machine → store + outbox, one writer; `engine::host` holds the pure host rules.
//! - [`reconcile`] — config sources (directory watch, git poll) and the keyed-diff apply.
//! - [`serve`] — the composition root: starts, wires and stops every task.
//! - [`agent`] — on a monitored server: host metrics from /proc and /sys, log keyword tailing,
//!   down-checks, and the push loop with its bounded backlog (`agent::run`).
//!
//! Dependencies point one way: `config` and the pure `alert` logic import no tokio, sqlx or
//! axum; `probe`, `store`, `notify` and `api` know nothing of each other; `engine` and
//! `reconcile` are the only modules that connect probe → alert → notify → store, and `serve`
//! starts them. `src/main.rs` only parses arguments and maps results to exit codes.

pub mod agent;
pub mod alert;
pub mod api;
pub mod clock;
pub mod codeowners;
pub mod collect;
pub mod config;
pub mod engine;
pub mod lint;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod policy_test;
pub mod probe;
pub mod reconcile;
pub mod serve;
pub mod store;
pub mod token;
