//! The integration tests: one binary, one module per area.

mod common;
mod config_cli;
mod lint_rules;
