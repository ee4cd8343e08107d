//! `watchkeeper test`: policy unit tests run by the real binary over real trees.

use std::fs;
use std::path::Path;

use crate::common::{self, repo_root};

fn copy_quickstart(to: &Path) {
    for entry in fs::read_dir(repo_root().join("examples/quickstart")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn the_quickstart_tests_pass() {
    let run = common::run(&["test", repo_root().join("examples/quickstart").to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.ends_with("3 passed, 0 failed\n"), "{}", run.output());
}

#[test]
fn a_wrong_expectation_fails_with_expected_and_got() {
    let tmp = tempfile::tempdir().unwrap();
    copy_quickstart(tmp.path());
    fs::write(
        tmp.path().join("checks.test.yaml"),
        "tests:\n  - name: too eager\n    monitor: shop/demo\n    ports: { 9000: \"down*2\" }\n    expect:\n      - { at: 10s, port: 9000, alert: fired }\n",
    )
    .unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stdout.contains("FAIL too eager (checks.test.yaml)"), "{}", run.output());
    assert!(run.stdout.contains("  alerts expected:\n    10s port 9000 Fired\n  alerts got:\n"), "{}", run.output());
    assert!(run.stdout.ends_with("0 passed, 1 failed\n"), "{}", run.output());
}

#[test]
fn maintenance_suppresses_notifications_but_not_the_alert() {
    let tmp = tempfile::tempdir().unwrap();
    copy_quickstart(tmp.path());
    fs::write(
        tmp.path().join("maintenance.yaml"),
        "kind: Maintenance\nname: upgrade\nproject: shop\nall: true\nstart: 2026-01-05T00:00:00Z\nend: 2099-01-01T00:00:00Z\nreason: test\n",
    )
    .unwrap();
    fs::write(
        tmp.path().join("checks.test.yaml"),
        "tests:\n  - name: silenced\n    monitor: shop/demo\n    ports: { 9000: \"down*3 ok\" }\n    expect:\n\
         \x20     - { at: 20s, port: 9000, alert: fired }\n      - { at: 30s, port: 9000, alert: resolved }\n    notifications:\n\
         \x20     - { at: 20s, to: alice@example.com, medium: email, status: not_sent }\n\
         \x20     - { at: 20s, to: bob@example.com, medium: email, status: not_sent }\n\
         \x20     - { at: 30s, to: alice@example.com, medium: email, status: not_sent }\n\
         \x20     - { at: 30s, to: bob@example.com, medium: email, status: not_sent }\n",
    )
    .unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.contains("PASS silenced"), "{}", run.output());
}

#[test]
fn a_malformed_test_file_or_unknown_monitor_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    copy_quickstart(tmp.path());
    fs::write(tmp.path().join("checks.test.yaml"), "tests:\n  - name: x\n    monitr: shop/demo\n    ports: {}\n").unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("checks.test.yaml") && run.stderr.contains("monitr"), "{}", run.output());
    fs::write(tmp.path().join("checks.test.yaml"), "tests:\n  - name: x\n    monitor: shop/nope\n    ports: {}\n").unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("no port monitor `nope`"), "{}", run.output());
}
