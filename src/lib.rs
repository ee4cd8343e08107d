//! watchkeeper: infrastructure monitoring as code.
//!
//! Teams keep their monitoring — projects, groups and roles, servers, port monitors,
//! down-check pairs, alert policies, channels, maintenance windows — as YAML in git.
//! `lint`, `plan` and `codeowners` check and explain a change before it merges; `serve` follows
//! the tree and runs it; `agent` reports a server's host metrics to it.
//!
//! # Layout
//!
//! The pure core — configuration, the agent protocol, notification planning, alert decisions —
//! does no I/O and reads no clock; everything with sockets, files or a database sits above it.
//!
//! - [`clock`] — the wall clock in epoch milliseconds, read in one place.
//! - [`token`] — random tokens, their SHA-256, constant-time comparison.
//! - [`catalog`] — the host metrics watchkeeper knows: name, unit, what each has one value per,
//!   whether policies may alert on it.
//! - [`errors`] — error text as operators read it; the error of an unknown enum word.
//! - [`metrics`] — the Prometheus registry behind `/metrics` (watchkeeper's own figures).
//! - [`lease`] — how replicas on one PostgreSQL divide the work: the shard of a server or
//!   monitor, which live replica should own a shard (rendezvous hashing), which replicas run a
//!   revision behind the newest ([`lease::RevisionSkew`]: they take no new shards), and [`lease::Ownership`],
//!   the shards this replica holds now, which every task that probes, scrapes or decides asks.
//! - [`config`] — raw serde types (`raw`), reading a tree with positions (`load`), the one
//!   `compile` step to the validated model (`model`), diagnostics, the object `diff`, schema.
//! - [`lint`] — rendering diagnostics: human (with snippet), JSON, GitHub annotations.
//! - [`codeowners`] — CODEOWNERS from group and project roles.
//! - [`protocol`] — the agent ↔ collector wire types both ends import.
//! - [`notification`] — who hears about an alert, through which channel, in which language, and
//!   what the message says (pure).
//! - [`probe`] — TCP checks on schedule (I/O only; no storage, no alert logic).
//! - [`alert`] — the pure alert core: the state machine, rule identities, what each observation
//!   means, suppression, retirement, and [`alert::decide`] — the one decision serve and
//!   `watchkeeper test` share.
//! - [`policy_test`] — `watchkeeper test`: policy unit tests through that decision; a test that
//!   cannot run is reported as `lint` reports a problem.
//! - [`store`] — SQLite / PostgreSQL, one file per table group: revisions, probe results, alert
//!   state, history and acknowledgements, outbox, host samples with their rollups, the replicas'
//!   heartbeats; the lock that keeps a SQLite file to one serve.
//! - [`report`] — daily, weekly and monthly reports from the stored samples and alert history,
//!   in the project's days; as JSON, text tables and CSV; the daily report e-mail.
//! - [`delivery`] — SMTP / SMS / webhook senders, the outbox worker, the bounce Maildir scanner.
//! - [`collect`] — host metrics into serve: the group-committing `writer`, the `live` view of each
//!   server's newest report (with replicas, it `follow`s the reports the others stored), agents'
//!   assignments, the node_exporter `scrape`r.
//! - [`engine`] — the one writer of alert state: observations → [`alert::decide`] → store + outbox,
//!   with storm control (digests) on the notifications; with replicas, for the shards its
//!   replica holds only, every write (alert state, probe results) fenced by the shard's lease.
//! - [`api`] — the status API and its token scopes (read-only but for acknowledgement notes);
//!   the agents' ingest endpoint; delivery receipts (read-receipt images, SMS delivery reports).
//! - [`plan`] — rendering an object diff between two trees; `plan::against` reads a running
//!   serve's objects and firing alerts through its status API.
//! - [`web`] — the dashboard pages on serve's listener: sign-in sessions, projects, the
//!   compound eye, the server list, server pages with their CPU, memory, network and disk detail
//!   views, alert pages, port monitors with their disconnect logs,
//!   availability timelines, reports; read through [`api`]'s functions and scopes (reports
//!   through [`report`], as the API builds them), and the one form (an
//!   acknowledgement) written through the API's own function; in English or Korean, by the
//!   user's `language` or the browser's `Accept-Language`, from one table of phrases.
//! - [`reconcile`] — revision sources (directory watch, git poll) and applying a revision.
//! - [`serve`] — the composition root: starts, wires and stops every task; this replica's
//!   heartbeat and (on PostgreSQL) its shard leases; its HTTP listener with connection caps and timeouts, within an open-files budget.
//! - [`agent`] — on a monitored server: host sampling on its own thread, log keyword tailing,
//!   down-checks, and the push loop with its bounded backlog.
//!
//! `src/main.rs` parses arguments, reads the environment (tokens, tuning variables), installs the
//! TLS provider and maps results to exit codes. The library reads the environment only to
//! expand the `${NAME}` references of channel settings, when a message is sent or an SMS
//! gateway's delivery report arrives.
//!
//! # Dependencies
//!
//! Dependencies point one way, down this table: each module uses only the modules its row
//! names, and every one of them is listed above it. `tests/it/layout.rs` reads every `crate::`
//! path in `src/` and fails on an edge this table does not name — and on a named edge no code
//! uses — so the table cannot drift from the code.
//!
//! | module | uses |
//! |---|---|
//! | `clock` | — |
//! | `token` | — |
//! | `catalog` | — |
//! | `errors` | — |
//! | `metrics` | — |
//! | `lease` | — |
//! | `config` | `catalog`, `clock` |
//! | `lint` | `config` |
//! | `codeowners` | `config` |
//! | `protocol` | `catalog`, `config` |
//! | `notification` | `config` |
//! | `probe` | `clock`, `config`, `lease` |
//! | `alert` | `config`, `notification`, `protocol` |
//! | `policy_test` | `alert`, `catalog`, `config`, `lint`, `notification`, `protocol` |
//! | `store` | `alert`, `catalog`, `clock`, `errors`, `lease`, `notification`, `protocol` |
//! | `report` | `clock`, `config`, `notification`, `store` |
//! | `delivery` | `clock`, `config`, `errors`, `metrics`, `notification`, `store`, `token` |
//! | `collect` | `catalog`, `clock`, `config`, `errors`, `lease`, `metrics`, `probe`, `protocol`, `store` |
//! | `engine` | `alert`, `clock`, `collect`, `config`, `lease`, `metrics`, `notification`, `probe`, `protocol`, `store` |
//! | `api` | `alert`, `catalog`, `clock`, `collect`, `config`, `errors`, `lease`, `metrics`, `notification`, `protocol`, `report`, `store`, `token` |
//! | `plan` | `alert`, `api`, `config` |
//! | `web` | `api`, `catalog`, `clock`, `config`, `report`, `store`, `token` |
//! | `reconcile` | `alert`, `clock`, `config`, `engine`, `lease`, `lint`, `metrics`, `probe`, `store` |
//! | `serve` | `api`, `clock`, `collect`, `config`, `delivery`, `engine`, `lease`, `metrics`, `notification`, `probe`, `reconcile`, `report`, `store`, `web` |
//! | `agent` | `catalog`, `clock`, `errors`, `metrics`, `probe`, `protocol` |

/// `as_str`, `Display` and `FromStr` for an enum written as fixed words — in YAML, the
/// database, the API and messages — so each such enum has exactly one text mapping. Its serde
/// form (where it has one) is checked against these words by a test.
macro_rules! words {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The word for this value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::errors::UnknownWord;

            fn from_str(text: &str) -> ::std::result::Result<Self, Self::Err> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    other => Err($crate::errors::UnknownWord { what: stringify!($ty), word: other.to_string() }),
                }
            }
        }
    };
}

pub mod agent;
pub mod alert;
pub mod api;
pub mod catalog;
pub mod clock;
pub mod codeowners;
pub mod collect;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod errors;
pub mod lease;
pub mod lint;
pub mod metrics;
pub mod notification;
pub mod plan;
pub mod policy_test;
pub mod probe;
pub mod protocol;
pub mod reconcile;
pub mod report;
pub mod serve;
pub mod store;
pub mod token;
pub mod web;
