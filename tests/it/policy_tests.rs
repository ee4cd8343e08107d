//! `watchkeeper test`: policy unit tests run by the real binary over real trees.

use std::fs;
use std::path::Path;

use crate::common::{self, repo_root};

/// The quickstart's configuration (not its tests) into `to`.
fn copy_quickstart(to: &Path) {
    for entry in fs::read_dir(repo_root().join("examples/quickstart")).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_name().to_string_lossy().ends_with(".test.yaml") {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_quickstart_tests_pass() {
    let run = common::run(&["test", repo_root().join("examples/quickstart").to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.ends_with("12 passed, 0 failed\n"), "{}", run.output());
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
    assert!(run.stdout.contains("  alerts expected:\n    10s port 9000 fired\n  alerts got:\n"), "{}", run.output());
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
fn a_test_file_can_say_a_parent_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    copy_quickstart(tmp.path());
    // app-02 depends on db-01, which depends on web-01.
    fs::write(
        tmp.path().join("app.yaml"),
        "kind: Server\nname: app-02\nproject: shop\nhost: 127.0.0.1\ndepends_on: [db-01]\n---\n\
         kind: PortMonitor\nname: app-port\nproject: shop\nserver: app-02\nports: [7000]\ninterval: 10s\nfailures: 3\n",
    )
    .unwrap();
    let mail = |at: &str, to: &str, kind: &str, status: &str| {
        format!("      - {{ at: {at}, to: {to}, medium: email, kind: {kind}, status: {status} }}\n")
    };
    let case = |name: &str, down: &str, fired: &str, resolved: &str| {
        format!(
            "  - name: {name}\n    monitor: shop/app-port\n    ports: {{ 7000: \"down*3 ok\" }}\n    parents_down: [{down}]\n\
             \x20   expect:\n      - {{ at: 20s, port: 7000, alert: fired }}\n      - {{ at: 30s, port: 7000, alert: resolved }}\n\
             \x20   notifications:\n{}{}{}{}",
            mail("20s", "alice@example.com", "fired", fired),
            mail("20s", "bob@example.com", "fired", fired),
            mail("30s", "alice@example.com", "resolved", resolved),
            mail("30s", "bob@example.com", "resolved", resolved),
        )
    };
    let tests = [
        // The grandparent is down when the alert fires, and up again when it resolves.
        case("held back while the grandparent is down", "{ server: web-01, from: 0s, to: 25s }", "not_sent", "pending"),
        // The parent goes down after the fire went out: the resolve still goes out.
        case("a resolve follows a fire that went out", "{ server: db-01, from: 25s }", "pending", "pending"),
        // Nothing is down then: the parent being down later changes nothing.
        case("a parent down later changes nothing", "{ server: db-01, from: 40s }", "pending", "pending"),
    ];
    fs::write(tmp.path().join("app.test.yaml"), format!("tests:\n{}", tests.concat())).unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.ends_with("3 passed, 0 failed\n"), "{}", run.output());

    // Without the parent down, the first test's expectations are wrong.
    fs::write(tmp.path().join("app.test.yaml"), format!("tests:\n{}", tests[0].replace("web-01, from: 0s, to: 25s", "web-01, from: 40s")))
        .unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stdout.contains("FAIL held back while the grandparent is down"), "{}", run.output());

    // A server the project does not have is named, with a suggestion.
    fs::write(tmp.path().join("app.test.yaml"), format!("tests:\n{}", tests[0].replace("server: web-01", "server: web-1"))).unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.output().contains("parents_down: no server `web-1` in `shop`"), "{}", run.output());
}

/// A malformed test file is reported as lint reports a problem — `file:line:column`, rule,
/// the line with a caret, a hint — and the other files and tests still run; the run exits 1.
#[test]
fn a_malformed_test_is_reported_at_its_position_and_the_others_still_run() {
    let tmp = tempfile::tempdir().unwrap();
    copy_quickstart(tmp.path());
    for name in ["checks.test.yaml", "host.test.yaml"] {
        fs::copy(repo_root().join("examples/quickstart").join(name), tmp.path().join(name)).unwrap();
    }
    fs::write(tmp.path().join("broken.test.yaml"), "tests:\n  - name: x\n    monitr: shop/demo\n    ports: {}\n").unwrap();
    fs::write(
        tmp.path().join("unknown.test.yaml"),
        "tests:\n  - name: points nowhere\n    monitor: shop/nope\n    ports: {}\n\
         \x20 - name: fine\n    monitor: shop/demo\n    ports: { 9000: ok }\n    expect: []\n",
    )
    .unwrap();
    let run = common::run_in(&["test", "."], Some(tmp.path()));
    assert_eq!(run.code, Some(1), "{}", run.output());
    let out = &run.stdout;
    assert!(out.contains("broken.test.yaml:3:5: error[unknown-field]: unknown field `monitr`\n"), "{}", run.output());
    assert!(out.contains("3 |     monitr: shop/demo\n"), "the line is shown: {}", run.output());
    assert!(out.contains("  = hint: did you mean `monitor`?\n"), "{}", run.output());
    assert!(
        out.contains("unknown.test.yaml:2:11: error[bad-test]: test `points nowhere`: no port monitor `nope` in `shop`\n"),
        "{}",
        run.output()
    );
    assert!(out.contains("PASS fine (unknown.test.yaml)\n"), "the file's other test runs: {}", run.output());
    assert!(out.contains("(host.test.yaml)"), "the files after the broken one run: {}", run.output());
    assert!(out.ends_with("10 passed, 2 failed\n"), "{}", run.output());
}

/// Servers and policies for the host tests, added to the quickstart tree.
const HOSTS: &str = r#"
kind: AlertPolicy
name: tight
project: shop
no_data: 2m
restart: true
rules:
  - { metric: cpu.usage, warning: 70, fatal: 90, for: 2m }
  - { metric: disk.usage, warning: 80, fatal: 90 }
---
kind: Server
name: batch-01
project: shop
host: 127.0.0.1
policy: tight
---
kind: Server
name: idle-01
project: shop
host: 127.0.0.1
policy: tight
paused: true
---
kind: Server
name: bare-01
project: shop
host: 127.0.0.1
---
kind: ProcessPolicy
name: worker
project: shop
process: worker
servers: [bare-01]
count: { min: 1, max: 4 }
cpu: { warning: 50, fatal: 90 }
memory: { warning: 20, fatal: 40 }
for: 1m
---
kind: LogPolicy
name: batch-log
project: shop
servers: [batch-01]
rules:
  - { file: /var/log/batch.log, keyword: FATAL, severity: warning }
  - { file: "/var/log/batch/*.log", keyword: panic, severity: fatal }
"#;

/// `watchkeeper test` over the quickstart's configuration, [`HOSTS`] and `tests` as the only
/// test file.
fn run_host_tests(tests: &str) -> common::Run {
    let tmp = tempfile::tempdir().unwrap();
    copy_quickstart(tmp.path());
    fs::write(tmp.path().join("hosts.yaml"), HOSTS).unwrap();
    fs::write(tmp.path().join("host.test.yaml"), tests).unwrap();
    common::run_in(&["test", "."], Some(tmp.path()))
}

/// Run `tests`; every one of its `count` tests must pass.
fn assert_host_tests_pass(tests: &str, count: usize) {
    let run = run_host_tests(tests);
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.ends_with(&format!("{count} passed, 0 failed\n")), "{}", run.output());
}

/// Run `tests`; it must be reported as malformed with all of `needles` in the report.
fn assert_host_tests_refused(tests: &str, needles: &[&str]) {
    let run = run_host_tests(tests);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stdout.contains("host.test.yaml:") && run.stdout.contains(": error["), "{}", run.output());
    for needle in needles {
        assert!(run.stdout.contains(needle), "missing {needle:?}:\n{}", run.output());
    }
}

#[test]
fn a_metric_rule_fires_after_for_drops_a_pending_alert_and_escalates_once() {
    assert_host_tests_pass(
        r#"
tests:
  - name: warning, pending dropped, then warning escalating to fatal
    server: shop/batch-01
    series:
      cpu.usage: "75 75 50 75x2 95 40"   # pending at 0 dropped at 2m; pending again from 3m
    expect:
      - { at: 5m, rule: "metric:cpu.usage", alert: fired, severity: warning }
      - { at: 6m, rule: "metric:cpu.usage", alert: escalated, severity: fatal }
      - { at: 7m, rule: "metric:cpu.usage", alert: resolved, severity: fatal }
    notifications:
      - { at: 5m, to: alice@example.com, medium: email, kind: fired, status: pending }
      - { at: 5m, to: bob@example.com, medium: email, kind: fired, status: pending }
      - { at: 6m, to: alice@example.com, medium: email, kind: escalated }
      - { at: 6m, to: bob@example.com, medium: email, kind: escalated }
      - { at: 7m, to: alice@example.com, medium: email, kind: resolved }
      - { at: 7m, to: bob@example.com, medium: email, kind: resolved }
  - name: a pending alert that clears is dropped silently
    server: shop/batch-01
    series:
      cpu.usage: "0+40x3 20"             # 0 40 80 120 20: 80 and above for one minute only
    expect: []
    notifications: []
"#,
        2,
    );
}

#[test]
fn every_mount_is_its_own_instance_and_a_vanished_one_resolves() {
    assert_host_tests_pass(
        r#"
tests:
  - name: per subject
    server: shop/batch-01
    interval: 30s
    series:
      disk.usage{/}: "50x3"
      disk.usage{/data}: "85 93x1 50"
      disk.usage{/mnt/usb}: "95 _"       # unmounted after the first report
    expect:
      - { at: 0s, rule: "metric:disk.usage", subject: /data, alert: fired, severity: warning }
      - { at: 0s, rule: "metric:disk.usage", subject: /mnt/usb, alert: fired, severity: fatal }
      - { at: 30s, rule: "metric:disk.usage", subject: /mnt/usb, alert: resolved }
      - { at: 30s, rule: "metric:disk.usage", subject: /data, alert: escalated, severity: fatal }
      - { at: 90s, rule: "metric:disk.usage", subject: /data, alert: resolved }
"#,
        1,
    );
}

#[test]
fn no_data_fires_when_reports_stop_and_resolves_when_they_resume() {
    assert_host_tests_pass(
        r#"
tests:
  - name: gaps written as _
    server: shop/batch-01               # no_data: 2m
    series:
      cpu.usage: "10x1 _x4 10"          # reports at 0 and 1m, none from 2m to 5m
    expect:
      - { at: 3m, rule: nodata, alert: fired, severity: fatal }
      - { at: 6m, rule: nodata, alert: resolved }
  - name: an explicit silent range
    server: shop/batch-01
    series:
      cpu.usage: "10x6"
    silent: [{ from: 2m, to: 5m }]
    expect:
      - { at: 3m, rule: nodata, alert: fired }
      - { at: 5m, rule: nodata, alert: resolved }
  - name: a server that never reports is silent from the start
    server: shop/batch-01
    series:
      cpu.usage: "_x3"
    expect:
      - { at: 2m, rule: nodata, alert: fired }
  - name: a gap shorter than the window is not a failure
    server: shop/batch-01
    series:
      cpu.usage: "10 _ 10 _ 10"
    expect: []
"#,
        4,
    );
}

#[test]
fn a_moved_boot_time_is_one_restart_event() {
    assert_host_tests_pass(
        r#"
tests:
  - name: reboot
    server: shop/batch-01
    series:
      cpu.usage: "10x5"
    boot_times: "1000 1000 1001 5000 _ 5000"   # 1001: clock jitter; `_` keeps 5000
    expect:
      - { at: 3m, rule: restart, alert: event, severity: warning }
    notifications:
      - { at: 3m, to: alice@example.com, medium: email, kind: event, status: pending }
      - { at: 3m, to: bob@example.com, medium: email, kind: event, status: pending }
"#,
        1,
    );
}

#[test]
fn process_count_and_cpu_rules_on_a_server_without_an_alert_policy() {
    assert_host_tests_pass(
        r#"
tests:
  - name: count below min, cpu, count above max
    server: shop/bare-01
    processes:
      worker:
        count: "1 0x1 1x1 6x1 1"        # 0 at 1m-2m, 6 (above max 4) at 5m-6m
        cpu: "10 _x2 95x1 10x3"
        memory: "5 _x2 5x4"
    expect:
      - { at: 2m, rule: "process:worker:count", alert: fired, severity: fatal }
      - { at: 3m, rule: "process:worker:count", alert: resolved }
      - { at: 4m, rule: "process:worker:cpu", alert: fired, severity: fatal }
      - { at: 5m, rule: "process:worker:cpu", alert: resolved }
      - { at: 6m, rule: "process:worker:count", alert: fired }
      - { at: 7m, rule: "process:worker:count", alert: resolved }
"#,
        1,
    );
    assert_host_tests_refused(
        "tests:\n  - name: no policy\n    server: shop/bare-01\n    expect:\n      - { at: 1m, rule: \"metric:cpu.usage\", alert: fired }\n",
        &[
            "test `no policy`",
            "rule `metric:cpu.usage` cannot fire on `bare-01`: its policies give process:worker:count, process:worker:cpu, process:worker:memory",
        ],
    );
    assert_host_tests_refused(
        "tests:\n  - name: busy idle\n    server: shop/bare-01\n    processes: { worker: { count: \"0\", cpu: \"5\" } }\n",
        &["processes `worker` at 0s: cpu or memory given while count is 0"],
    );
}

#[test]
fn log_events_are_rate_limited_per_rule() {
    assert_host_tests_pass(
        r#"
tests:
  - name: one event per rule per five minutes
    server: shop/batch-01
    series:
      cpu.usage: "10x6"
    logs:
      - { at: 30s, policy: batch-log, rule: 0, line: "FATAL out of disk" }
      - { at: 2m, policy: batch-log, rule: 0, line: "FATAL out of disk" }
      - { at: 2m, policy: batch-log, rule: 1, line: "thread main panicked", file: /var/log/batch/run.log }
      - { at: 330s, policy: batch-log, rule: 0, line: "FATAL again" }
      - { at: 6m, policy: batch-log, rule: 1, line: "no keyword here" }
    expect:
      - { at: 30s, rule: "log:batch-log:0", alert: event, severity: warning }
      - { at: 2m, rule: "log:batch-log:1", alert: event, severity: fatal }
      - { at: 330s, rule: "log:batch-log:0", alert: event }
"#,
        1,
    );
    assert_host_tests_refused(
        "tests:\n  - name: wrong rule\n    server: shop/batch-01\n    logs:\n      - { at: 1m, policy: batch-log, rule: 5, line: x }\n",
        &["logs: rule `log:batch-log:5` cannot fire on `batch-01`: its policies give log:batch-log:0, log:batch-log:1"],
    );
}

#[test]
fn a_paused_server_produces_nothing() {
    assert_host_tests_pass(
        "tests:\n  - name: paused\n    server: shop/idle-01\n    series: { cpu.usage: \"99x10 _x5\" }\n    boot_times: \"1 1000\"\n    expect: []\n",
        1,
    );
}

#[test]
fn a_wrong_host_expectation_prints_expected_and_got() {
    let run = run_host_tests(
        r#"
tests:
  - name: too early
    server: shop/batch-01
    series:
      cpu.usage: "95x3"
      disk.usage{/data}: "95"
    expect:
      - { at: 1m, rule: "metric:cpu.usage", alert: fired, severity: fatal }
      - { at: 0s, rule: "metric:disk.usage", alert: fired }
"#,
    );
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stdout.contains("FAIL too early (host.test.yaml)"), "{}", run.output());
    let explained = "  alerts expected:\n    0s metric:disk.usage fired\n    1m metric:cpu.usage fired fatal\n  alerts got:\n\
                     \x20   0s metric:disk.usage{/data} fired fatal\n    1m metric:disk.usage{/data} resolved fatal\n\
                     \x20   2m metric:cpu.usage fired fatal\n";
    assert!(run.stdout.contains(explained), "{}", run.output());
    assert!(run.stdout.ends_with("0 passed, 1 failed\n"), "{}", run.output());
}

#[test]
fn malformed_host_tests_are_reported_naming_file_test_and_token() {
    let case = |body: &str| format!("tests:\n  - name: bad\n    server: shop/batch-01\n{body}");
    assert_host_tests_refused(
        &case("    series: { cpu.usage: \"10 9z 10\" }\n"),
        &["host.test.yaml", "test `bad`", "series `cpu.usage`", "`9z`"],
    );
    assert_host_tests_refused(&case("    series: { cpu.usage: \"10+5\" }\n"), &["`10+5`: a step needs a count"]);
    assert_host_tests_refused(&case("    series: { cpu.usag: \"10\" }\n"), &["unknown metric `cpu.usag`; did you mean `cpu.usage`?"]);
    assert_host_tests_refused(&case("    series: { \"disk.usage{/data\": \"10\" }\n"), &["write a subject as `metric{subject}`"]);
    assert_host_tests_refused(
        &case("    processes: { worker: { count: \"1.5\" } }\n"),
        &["processes `worker` count at 0s: `1.5` is not a whole number"],
    );
    assert_host_tests_refused(&case("    boot_times: \"-1\"\n"), &["boot_times at 0s"]);
    assert_host_tests_refused(&case("    interval: 0s\n"), &["interval: must be longer than 0"]);
    assert_host_tests_refused(&case("    silent: [{ from: 5m, to: 2m }]\n"), &["silent: `from: 5m` must come before `to: 2m`"]);
    assert_host_tests_refused(&case("    ports: { 80: ok }\n"), &["`ports` is for a `monitor` test"]);
    assert_host_tests_refused(
        &case("    expect:\n      - { at: 1m, rule: \"metric:memory.usage\", alert: fired }\n"),
        &[
            "rule `metric:memory.usage` cannot fire on `batch-01`: its policies give log:batch-log:0, log:batch-log:1, metric:cpu.usage, metric:disk.usage, nodata, restart",
        ],
    );
    assert_host_tests_refused(
        &case("    expect:\n      - { at: 1m, port: 80, alert: fired }\n"),
        &["expect at 1m: a `server` test expects a `rule`"],
    );
    assert_host_tests_refused(
        &case("    expect:\n      - { at: 1m30s, rule: nodata, alert: fired }\n"),
        &["expect: `1m30s` is not a duration"],
    );
    assert_host_tests_refused(&case("    expect:\n      - { at: 1m, rule: nodata, alert: exploded }\n"), &["host.test.yaml", "exploded"]);
    assert_host_tests_refused(
        "tests:\n  - name: typo\n    server: shop/batch-02\n",
        &["test `typo`: no server `batch-02` in `shop`; did you mean `batch-01`?"],
    );
    assert_host_tests_refused("tests:\n  - name: both\n    server: shop/batch-01\n    monitor: shop/demo\n", &["not both"]);
    assert_host_tests_refused("tests:\n  - name: neither\n    expect: []\n", &["a test needs `monitor`"]);
    assert_host_tests_refused(
        "tests:\n  - name: mixed\n    monitor: shop/demo\n    ports: { 9000: ok }\n    series: { cpu.usage: \"1\" }\n",
        &["`series` is for a `server` test"],
    );
    assert_host_tests_refused(
        "tests:\n  - name: rule on a port\n    monitor: shop/demo\n    ports: { 9000: ok }\n    expect:\n      - { at: 0s, rule: nodata, alert: fired }\n",
        &["expect at 0s: a `monitor` test expects a `port`"],
    );
}
