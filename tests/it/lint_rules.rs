//! Every lint rule, as the real binary reports it.
//!
//! Each rule has a small broken tree under `tests/fixtures/invalid/<rule-id>/` and an `EXPECT`
//! file listing, one per line, the diagnostics it must produce (`path:line:column rule-id`)
//! and no others. Hostile input that cannot sensibly be committed (a 100 MB file, FIFOs,
//! symlink loops) is generated in a temporary directory instead, and every run is guarded
//! against hangs.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use watchkeeper::config::diagnostic::{Level, RULES};
use watchkeeper::config::load::MAX_FILE_BYTES;

use crate::common::{self, Run};

/// Rules whose input cannot be committed sensibly; the tests below generate it.
const GENERATED: &[&str] = &["io-error", "file-too-large", "empty-tree", "bad-test"];

fn fixtures() -> PathBuf {
    common::repo_root().join("tests/fixtures/invalid")
}

fn level_of(rule: &str) -> Option<Level> {
    RULES.iter().find(|r| r.id == rule).map(|r| r.level)
}

/// One diagnostic as `EXPECT` and the JSON output both describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Diag {
    file: String,
    line: u64,
    col: u64,
    rule: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{} {}", self.file, self.line, self.col, self.rule)
    }
}

fn diag(file: &str, line: u64, col: u64, rule: &str) -> Diag {
    Diag { file: file.into(), line, col, rule: rule.into() }
}

/// Parse an `EXPECT` file: `path:line:column rule-id` per line; blank lines and `#` comments skipped.
fn parse_expect(text: &str) -> Result<Vec<Diag>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("EXPECT line {}: `{line}` is not `path:line:column rule-id`", n + 1);
        let (place, rule) = line.rsplit_once(' ').ok_or_else(bad)?;
        let mut parts = place.rsplitn(3, ':');
        let (Some(col), Some(row), Some(file)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        out.push(diag(file, row.parse().map_err(|_| bad())?, col.parse().map_err(|_| bad())?, rule.trim()));
    }
    Ok(out)
}

/// The diagnostics of a `--format json` run, sorted; `-` for a diagnostic with no file.
fn diagnostics(run: &Run) -> Vec<Diag> {
    let json = run.json();
    let items = json["diagnostics"].as_array().unwrap_or_else(|| panic!("no `diagnostics` array:\n{}", run.output()));
    let mut out: Vec<Diag> = items
        .iter()
        .map(|d| Diag {
            file: d["file"].as_str().unwrap_or("-").to_string(),
            line: d["line"].as_u64().unwrap_or(0),
            col: d["column"].as_u64().unwrap_or(0),
            rule: d["rule"].as_str().unwrap_or("?").to_string(),
        })
        .collect();
    out.sort();
    out
}

/// `expected` and `actual` as multisets: what is missing, and what is extra.
fn compare(expected: &[Diag], actual: &[Diag]) -> (Vec<Diag>, Vec<Diag>) {
    let mut extra = actual.to_vec();
    let mut missing = Vec::new();
    for e in expected {
        match extra.iter().position(|a| a == e) {
            Some(i) => {
                extra.remove(i);
            }
            None => missing.push(e.clone()),
        }
    }
    (missing, extra)
}

fn lint_json(dir: &Path, deny_warnings: bool) -> Run {
    let mut args = vec!["--format", "json"];
    if deny_warnings {
        args.push("--deny-warnings");
    }
    common::lint(dir, &args)
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("tests/fixtures/invalid exists")
        .map(|e| e.expect("readable fixture entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Check one fixture; `Err` describes everything wrong with it.
fn check_fixture(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let text = fs::read_to_string(dir.join("EXPECT")).map_err(|e| format!("cannot read EXPECT: {e}"))?;
    let mut expected = parse_expect(&text)?;
    expected.sort();
    let mut problems = Vec::new();
    if expected.is_empty() {
        problems.push("EXPECT lists no diagnostic".to_string());
    }
    for e in expected.iter().filter(|e| e.rule != name) {
        problems.push(format!("EXPECT line `{e}` is not about rule `{name}`: a fixture should trigger only its own rule"));
    }
    let run = lint_json(dir, true);
    if run.code != Some(1) {
        problems.push(format!("exit code {:?} with --deny-warnings, expected 1", run.code));
    }
    let actual = diagnostics(&run);
    let (missing, extra) = compare(&expected, &actual);
    for m in &missing {
        problems.push(format!("expected but not reported: {m}"));
    }
    for x in &extra {
        problems.push(format!("reported but not expected:  {x}"));
    }
    for d in run.json()["diagnostics"].as_array().into_iter().flatten() {
        let rule = d["rule"].as_str().unwrap_or("?");
        let severity = d["severity"].as_str().unwrap_or("?");
        match level_of(rule) {
            Some(level) if level.as_str() == severity => {}
            Some(level) => problems.push(format!("`{rule}` reported as {severity}, RULES says {}", level.as_str())),
            None => problems.push(format!("`{rule}` is not in RULES")),
        }
    }
    // Without --deny-warnings only errors fail the run.
    if level_of(&name) == Some(Level::Warning) {
        let lenient = lint_json(dir, false);
        if lenient.code != Some(0) {
            problems.push(format!("exit code {:?} without --deny-warnings for a warning-only tree, expected 0", lenient.code));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let human = common::lint(dir, &["--format", "human", "--deny-warnings"]);
    Err(format!("{}\n  --- watchkeeper lint output ---\n{}", problems.join("\n"), human.stdout))
}

#[test]
fn every_fixture_reports_exactly_its_expected_diagnostics() {
    let dirs = fixture_dirs();
    assert!(!dirs.is_empty(), "no fixtures under {}", fixtures().display());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            check_fixture(dir).err().map(|e| format!("=== {}\n{e}", dir.strip_prefix(common::repo_root()).unwrap_or(dir).display()))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n\n{}", failures.len(), dirs.len(), failures.join("\n\n"));
}

#[test]
fn every_rule_has_a_fixture_or_a_generated_test() {
    let fixture_names: BTreeSet<String> =
        fixture_dirs().iter().filter_map(|d| d.file_name().and_then(|n| n.to_str()).map(String::from)).collect();
    let rule_ids: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    let mut problems = Vec::new();
    for id in &rule_ids {
        let has_fixture = fixture_names.contains(*id) && fixtures().join(id).join("EXPECT").is_file();
        if !has_fixture && !GENERATED.contains(id) {
            problems.push(format!("rule `{id}` has no tests/fixtures/invalid/{id}/EXPECT and is not in GENERATED"));
        }
    }
    for name in &fixture_names {
        if !rule_ids.contains(name.as_str()) {
            problems.push(format!("fixture `{name}` is not a rule id in RULES"));
        }
    }
    for id in GENERATED {
        if !rule_ids.contains(id) {
            problems.push(format!("GENERATED lists `{id}`, which is not in RULES"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Generated trees

const PEOPLE: &str = "\
kind: User
email: alice@example.com
name: Alice Kim
phone: \"+82-10-1234-5678\"
---
kind: User
email: bob@example.com
name: Bob Lee
";

const CHANNELS: &str = "\
kind: Channel
name: ops-mail
type: email
smtp: { host: smtp.example.com, port: 587, tls: starttls, password: \"${SMTP_PASSWORD}\" }
from: \"watchkeeper <alerts@example.com>\"
";

const PROJECT: &str = "\
kind: Project
name: shop
timezone: Asia/Seoul
members:
  - { user: alice@example.com, role: admin }
channels: [ops-mail]
---
kind: Server
name: web-01
project: shop
host: 203.0.113.10
policy: linux-default
";

fn write(dir: &Path, rel: &str, text: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().expect("has a parent")).expect("create directories");
    fs::write(&path, text).expect("write file");
}

/// A temporary directory holding a small valid tree (one project, one server).
fn base_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "people.yaml", PEOPLE);
    write(tmp.path(), "channels.yaml", CHANNELS);
    write(tmp.path(), "project.yaml", PROJECT);
    tmp
}

fn rules_of(diags: &[Diag]) -> Vec<&str> {
    diags.iter().map(|d| d.rule.as_str()).collect()
}

#[test]
fn the_generated_base_tree_is_clean() {
    let tmp = base_tree();
    let run = lint_json(tmp.path(), true);
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert_eq!(diagnostics(&run), vec![]);
}

#[test]
fn receipt_settings_belong_to_their_channel_type() {
    let tmp = base_tree();
    let dir = tmp.path();
    let good = format!(
        "{CHANNELS}track_reads: true\nread_receipt_to: receipts@example.com\nbounces: /var/mail/wk-bounces\n---\n\
         kind: Channel\nname: ops-sms\ntype: sms\nurl: https://sms.example.com/send\n\
         delivery_reports: {{ secret: \"${{SMS_REPORT_SECRET}}\", id: $.msg_id, status: $.result.status, error: $.result.error, \
         delivered: [DELIVRD], failed: [UNDELIV] }}\n"
    );
    write(dir, "channels.yaml", &good);
    let run = lint_json(dir, true);
    assert_eq!(run.code, Some(0), "{}", run.output());

    let wrong = format!(
        "{CHANNELS}delivery_reports: {{ secret: \"${{S}}\", id: $.id, status: $.s, delivered: [ok], failed: [ko] }}\n\
         read_receipt_to: not-an-address\n---\n\
         kind: Channel\nname: ops-sms\ntype: sms\nurl: https://sms.example.com/send\ntrack_reads: true\nbounces: /var/mail/x\n\
         delivery_reports: {{ secret: inline-secret, id: $.id, status: $.s, delivered: [DONE], failed: [DONE] }}\n"
    );
    write(dir, "channels.yaml", &wrong);
    let run = lint_json(dir, false);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(
        diagnostics(&run),
        vec![
            diag("channels.yaml", 6, 19, "exclusive-fields"),
            diag("channels.yaml", 7, 18, "bad-email"),
            diag("channels.yaml", 13, 14, "exclusive-fields"),
            diag("channels.yaml", 14, 10, "exclusive-fields"),
            diag("channels.yaml", 15, 29, "inline-secret"),
            diag("channels.yaml", 15, 95, "exclusive-fields"),
        ],
        "{}",
        run.output()
    );
}

#[test]
fn a_100_mb_file_is_refused_without_reading_it() {
    let tmp = base_tree();
    let dir = tmp.path();
    // Real YAML content, not a sparse file: reading it would be slow and memory-hungry.
    let line = "# padding padding padding padding padding padding padding padding padding padding\n";
    let chunk = line.repeat((1 << 20) / line.len());
    let mut huge = String::from("kind: User\nemail: carol@example.com\nname: Carol Park\n");
    {
        use std::io::Write;
        fs::create_dir_all(dir.join("users")).unwrap();
        let mut f = std::io::BufWriter::new(fs::File::create(dir.join("users/huge.yaml")).unwrap());
        f.write_all(huge.as_bytes()).unwrap();
        for _ in 0..100 {
            f.write_all(chunk.as_bytes()).unwrap();
        }
        f.flush().unwrap();
    }
    assert!(fs::metadata(dir.join("users/huge.yaml")).unwrap().len() >= 100 * 1_000_000);
    // Just over the limit is refused too.
    huge.push_str(&"#".repeat(MAX_FILE_BYTES as usize + 1 - huge.len()));
    write(dir, "users/just-over.yaml", &huge);

    let run = lint_json(dir, true);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(
        diagnostics(&run),
        vec![diag("users/huge.yaml", 1, 1, "file-too-large"), diag("users/just-over.yaml", 1, 1, "file-too-large")],
        "{}",
        run.output()
    );
    let human = common::lint(dir, &[]);
    assert_eq!(human.code, Some(1), "{}", human.output());
    assert!(human.stdout.contains("users/huge.yaml:1:1: error[file-too-large]"), "{}", human.output());
}

#[test]
fn a_file_of_exactly_the_size_limit_is_read() {
    let tmp = base_tree();
    let mut text = String::from("kind: User\nemail: carol@example.com\nname: Carol Park\n");
    let line = "# padding padding padding padding padding padding padding padding padding padding\n";
    while text.len() + line.len() <= MAX_FILE_BYTES as usize {
        text.push_str(line);
    }
    text.push_str(&"#".repeat(MAX_FILE_BYTES as usize - text.len()));
    assert_eq!(text.len() as u64, MAX_FILE_BYTES);
    write(tmp.path(), "users/at-limit.yaml", &text);
    let run = lint_json(tmp.path(), true);
    assert_eq!(run.code, Some(0), "{}", run.output());
}

#[test]
fn an_alias_bomb_is_refused() {
    let tmp = base_tree();
    // Ten levels of ten aliases: 10^10 "lol"s if expanded.
    let mut bomb = String::from(
        "# billion laughs\nl0: &l0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for level in 1..=10 {
        let alias = format!("*l{}", level - 1);
        bomb.push_str(&format!("l{level}: &l{level} [{}]\n", vec![alias; 10].join(", ")));
    }
    // The bomb sits between two documents; the one after it is still checked.
    let text = format!(
        "kind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.11\npolicy: linux-default\n---\n{bomb}---\nkind: Server\nname: Web-03\nproject: shop\nhost: 203.0.113.12\npolicy: linux-default\n"
    );
    write(tmp.path(), "servers.yaml", &text);
    let run = lint_json(tmp.path(), true);
    assert_eq!(run.code, Some(1), "{}", run.output());
    let diags = diagnostics(&run);
    assert_eq!(rules_of(&diags), ["yaml-limit", "bad-slug"], "{}", run.output());
    assert_eq!(diags[1], diag("servers.yaml", 21, 7, "bad-slug"));
    let yaml_limit = &diags[0];
    assert!((8..=18).contains(&yaml_limit.line), "yaml-limit should point into the bomb document: {yaml_limit}");

    // Nesting too deep is a resource limit too.
    let tmp = base_tree();
    write(tmp.path(), "deep.yaml", format!("x: {}{}\n", "[".repeat(500), "]".repeat(500)));
    let run = lint_json(tmp.path(), true);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(rules_of(&diagnostics(&run)), ["yaml-limit"], "{}", run.output());
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_character_column() {
    let tmp = base_tree();
    // Columns count characters: "name: Zoë " is 10 characters (11 bytes), so the bad byte is column 11.
    let mut bytes = b"kind: User\nemail: zoe@example.com\nname: Zo\xc3\xab ".to_vec();
    bytes.extend_from_slice(b"\xff\xfeLee\n");
    write(tmp.path(), "users/zoe.yaml", &bytes);
    // A truncated multi-byte sequence at the very end.
    write(tmp.path(), "users/tail.yaml", b"kind: User\nemail: tail@example.com\nname: Ta\xe2\x82");
    let run = lint_json(tmp.path(), true);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(
        diagnostics(&run),
        vec![diag("users/tail.yaml", 3, 9, "invalid-utf8"), diag("users/zoe.yaml", 3, 11, "invalid-utf8")],
        "{}",
        run.output()
    );
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_dangling_links_are_io_errors_and_the_rest_is_still_linted() {
    use std::os::unix::fs::symlink;
    let tmp = base_tree();
    let dir = tmp.path();
    write(dir, "servers/web.yaml", "kind: Server\nname: web_02\nproject: shop\nhost: 203.0.113.11\npolicy: linux-default\n");
    symlink("..", dir.join("servers/loop")).unwrap();
    symlink("missing", dir.join("x.yaml")).unwrap();
    symlink("self.yaml", dir.join("self.yaml")).unwrap();
    let run = lint_json(dir, true);
    assert_eq!(run.code, Some(1), "{}", run.output());
    let diags = diagnostics(&run);
    // Each problem once: the loop is not followed, so web.yaml is not read a second time.
    assert_eq!(
        diags,
        vec![
            diag("self.yaml", 1, 1, "io-error"),
            diag("servers/loop", 1, 1, "io-error"),
            diag("servers/web.yaml", 2, 7, "bad-slug"),
            diag("x.yaml", 1, 1, "io-error"),
        ],
        "{}",
        run.output()
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_not_read() {
    let tmp = base_tree();
    let fifo = tmp.path().join("pipe.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    // Reading the FIFO would block forever (nothing writes to it); the hang guard catches that.
    let run = lint_json(tmp.path(), true);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(diagnostics(&run), vec![diag("pipe.yaml", 1, 1, "io-error")], "{}", run.output());
}

#[test]
fn an_empty_file_is_a_warning() {
    let tmp = base_tree();
    write(tmp.path(), "servers.yaml", "");
    let lenient = lint_json(tmp.path(), false);
    assert_eq!(lenient.code, Some(0), "{}", lenient.output());
    assert_eq!(diagnostics(&lenient), vec![diag("servers.yaml", 1, 1, "empty-file")]);
    assert_eq!(lenient.json()["diagnostics"][0]["severity"], "warning");
    let strict = lint_json(tmp.path(), true);
    assert_eq!(strict.code, Some(1), "{}", strict.output());
}

#[test]
fn a_tree_with_no_documents_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "README.md", "not configuration\n");
    write(tmp.path(), "checks.test.yaml", "tests: []\n");
    let run = lint_json(tmp.path(), false);
    assert_eq!(run.code, Some(1), "{}", run.output());
    let v = run.json();
    assert_eq!(v["diagnostics"][0]["rule"], "empty-tree", "{}", run.output());
    assert_eq!(v["diagnostics"][0]["file"], serde_json::Value::Null);
    let human = common::lint(tmp.path(), &[]);
    assert!(human.stdout.contains("-: error[empty-tree]: no configuration documents under ."), "{}", human.output());
}

// ---------------------------------------------------------------------------------------------
// Output formats and exit codes

/// The base tree with a typo in a server's policy (line 5, column 9 of servers.yaml) and a
/// server with no policy (a warning, line 8).
fn typo_tree() -> tempfile::TempDir {
    let tmp = base_tree();
    write(
        tmp.path(),
        "servers.yaml",
        "kind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.11\npolicy: linux-defualt # typo\n---\nkind: Server\nname: web-03\nproject: shop\nhost: 203.0.113.12\n",
    );
    tmp
}

#[test]
fn github_format_emits_workflow_commands() {
    let tmp = typo_tree();
    let run = common::lint(tmp.path(), &["--format", "github"]);
    assert_eq!(run.code, Some(1), "{}", run.output());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("::error file=servers.yaml,line=5,col=9,title=unknown-reference::unknown policy `linux-defualt`"),
        "{}",
        run.stdout
    );
    assert!(lines[0].contains("did you mean `linux-default`?"), "{}", run.stdout);
    assert!(lines[1].starts_with("::warning file=servers.yaml,line=8,col=7,title=no-policy::"), "{}", run.stdout);
    assert_eq!(lines[2], "1 error, 1 warning in 4 files", "{}", run.stdout);
    assert_eq!(lines.len(), 3, "{}", run.stdout);
}

#[test]
fn human_format_shows_the_source_line_a_caret_and_the_hint() {
    let tmp = typo_tree();
    let run = common::lint(tmp.path(), &[]);
    assert_eq!(run.code, Some(1), "{}", run.output());
    let out = &run.stdout;
    assert!(out.contains("servers.yaml:5:9: error[unknown-reference]: unknown policy `linux-defualt`\n"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let source = lines.iter().position(|l| *l == "5 | policy: linux-defualt # typo").unwrap_or_else(|| panic!("no source line:\n{out}"));
    let caret = lines[source + 1];
    let token = lines[source].find("linux-defualt").unwrap();
    assert_eq!(caret.find('^'), Some(token), "caret not under the token:\n{out}");
    assert_eq!(caret.matches('^').count(), "linux-defualt".len(), "caret should span the token:\n{out}");
    assert!(out.contains("= hint: did you mean `linux-default`?"), "{out}");
    assert!(out.contains("servers.yaml:8:7: warning[no-policy]"), "{out}");
    assert!(out.ends_with("1 error, 1 warning in 4 files\n"), "{out}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let run = common::run(&["lint", missing.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("no-such-dir"), "the error should name the directory:\n{}", run.output());

    let file = tmp.path().join("file.yaml");
    fs::write(&file, PEOPLE).unwrap();
    let run = common::run(&["lint", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.output());

    let run = common::lint(tmp.path(), &["--no-such-flag"]);
    assert_eq!(run.code, Some(2), "{}", run.output());
    let run = common::lint(tmp.path(), &["--format", "xml"]);
    assert_eq!(run.code, Some(2), "{}", run.output());
}

#[test]
fn a_clean_tree_exits_0_in_every_format() {
    let tmp = base_tree();
    for format in ["human", "json", "github"] {
        let run = common::lint(tmp.path(), &["--format", format, "--deny-warnings"]);
        assert_eq!(run.code, Some(0), "{format}: {}", run.output());
    }
}

#[test]
fn independent_problems_are_all_reported_in_one_run() {
    let tmp = base_tree();
    let dir = tmp.path();
    write(
        dir,
        "servers.yaml",
        "\
kind: Server
name: web-02
project: shop
host: 203.0.113.11
policy: linux-default
color: blue
---
kind: Server
name: web-03
project: shop
host: 203.0.113.13
policy: linux-default
---
kind: Server
name: DB_01
project: shop
host: 203.0.113.20
policy: database
---
kind: Server
name: db-02
project: shop
host: 203.0.113.21
",
    );
    write(dir, "broken.yaml", "kind: Server\nname: web-04\ntags: [web\n");
    write(
        dir,
        "monitors.yaml",
        "\
kind: PortMonitor
name: web-ports
project: shop
server: web-9
ports: [80, 443]
---
kind: PortMonitor
name: db-ports
project: shop
host: 203.0.113.20
ports: [5432]
interval: 5 minutes
",
    );
    write(dir, "people-extra.yaml", "kind: User\nemail: carol.example.com\nname: Carol Park\n");
    let run = lint_json(dir, false);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(
        diagnostics(&run),
        vec![
            diag("broken.yaml", 3, 7, "yaml-syntax"),
            diag("monitors.yaml", 4, 9, "unknown-reference"),
            diag("monitors.yaml", 12, 11, "bad-duration"),
            diag("people-extra.yaml", 2, 8, "bad-email"),
            diag("servers.yaml", 6, 1, "unknown-field"),
            diag("servers.yaml", 15, 7, "bad-slug"),
            diag("servers.yaml", 21, 7, "no-policy"),
        ],
        "{}",
        run.output()
    );
    let json = run.json();
    assert_eq!(json["errors"], 6);
    assert_eq!(json["warnings"], 1);
}

#[test]
fn expect_lines_parse() {
    assert_eq!(
        parse_expect("# comment\n\nprojects/shop/servers.yaml:12:7 unknown-reference\n").unwrap(),
        vec![diag("projects/shop/servers.yaml", 12, 7, "unknown-reference")]
    );
    assert!(parse_expect("servers.yaml:12 unknown-reference").is_err());
}

/// A malformed range in `networks` is one error that says the range was dropped; the servers it
/// would have approved are not blamed with `unapproved-network` errors of their own.
#[test]
fn an_invalid_network_range_is_reported_once_not_as_unapproved_servers() {
    let tmp = base_tree();
    write(
        tmp.path(),
        "project.yaml",
        PROJECT.replace("channels: [ops-mail]", "channels: [ops-mail]\nnetworks: [203.0.113.0/25, 203.0.113.128/33]")
            + "---\nkind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.130\npolicy: linux-default\n\
               ---\nkind: PortMonitor\nname: web-02-ports\nproject: shop\nhost: 203.0.113.140\nports: [80]\n",
    );
    let run = lint_json(tmp.path(), false);
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert_eq!(diagnostics(&run), vec![diag("project.yaml", 7, 28, "bad-address")], "{}", run.output());
    let message = run.json()["diagnostics"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("203.0.113.128/33") && message.contains("dropped"), "{message}");

    // Fixed, the addresses are checked against the ranges again.
    write(
        tmp.path(),
        "project.yaml",
        PROJECT.replace("channels: [ops-mail]", "channels: [ops-mail]\nnetworks: [203.0.113.0/28]")
            + "---\nkind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.130\npolicy: linux-default\n",
    );
    let run = lint_json(tmp.path(), false);
    assert_eq!(rules_of(&diagnostics(&run)), ["unapproved-network"], "{}", run.output());
}
