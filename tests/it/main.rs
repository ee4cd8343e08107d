//! The integration tests: one binary, one module per area.

mod api;
mod common;
mod config_cli;
mod lint_rules;
mod notify;
mod plan_against;
mod policy_tests;
mod serve_e2e;
mod store;
mod support;
