//! The integration tests: one binary, one module per area.

mod agent_e2e;
mod agent_host;
mod agent_run;
mod api;
mod ci_templates;
mod common;
mod config_cli;
mod dashboard;
mod engine;
mod ingest;
mod layout;
mod lifecycle;
mod lint_rules;
mod node_exporter;
mod notify;
mod packaging;
mod plan_against;
mod policy_tests;
mod probe_store;
mod reports;
mod samples;
mod scrape;
mod serve_e2e;
mod serve_start;
mod store;
mod support;
