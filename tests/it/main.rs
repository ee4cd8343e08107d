//! The integration tests: one binary, one module per area.

mod common;
mod lint_rules;
mod config_cli;
