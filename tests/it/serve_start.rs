//! `watchkeeper serve` as an operator starts and stops it: the operator token's name, what the
//! start-up log says (and that a log file holds no colour codes), where the database goes, and
//! that a clean shutdown leaves only the database file.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::{repo_root, run};
use crate::support::serve::Serve;

/// A small tree: one user without a token, one project, no channels.
fn write_tree(dir: &Path, user_token_sha256: Option<&str>) {
    fs::create_dir_all(dir).unwrap();
    let token = user_token_sha256.map(|h| format!("token_sha256: {h}\n")).unwrap_or_default();
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\n{token}---\n\
             kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: []\n"
        ),
    )
    .unwrap();
}

fn dir_args(tree: &Path, db: &Path) -> Vec<String> {
    vec!["--config".into(), tree.display().to_string(), "--db".into(), format!("sqlite://{}", db.display())]
}

fn status_with(serve: &Serve, token: &str) -> u16 {
    serve.request("GET", "/api/v1/status", &[("Authorization", &format!("Bearer {token}"))], b"").0
}

const NO_WAY_IN: &str = "nobody can read the status API";

#[test]
fn serve_takes_the_operator_token_from_watchkeeper_token_or_its_old_name() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    for (name, other) in [("WATCHKEEPER_TOKEN", "WATCHKEEPER_ADMIN_TOKEN"), ("WATCHKEEPER_ADMIN_TOKEN", "WATCHKEEPER_TOKEN")] {
        let env = [(name, "one-operator-token".to_string()), (other, String::new())];
        let log = work.path().join(format!("{name}.log"));
        let serve = Serve::start(&dir_args(&tree, &work.path().join(format!("{name}.db"))), &env, &log);
        assert_eq!(status_with(&serve, "one-operator-token"), 200, "{name} is the operator token\n{}", serve.log());
        assert_eq!(status_with(&serve, "another-token"), 401);
        serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.log().contains("revision applied"));
        assert!(!serve.log().contains(NO_WAY_IN), "{}", serve.log());
    }
}

#[test]
fn serve_without_any_token_says_once_that_nobody_can_read_the_api_and_how_to_fix_it() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    let env = [("WATCHKEEPER_TOKEN", String::new()), ("WATCHKEEPER_ADMIN_TOKEN", String::new())];
    let serve = Serve::start(&dir_args(&tree, &work.path().join("wk.db")), &env, &work.path().join("serve.log"));
    serve.wait_until("the warning is logged", Duration::from_secs(30), || serve.log().contains(NO_WAY_IN));
    let log = serve.log();
    let line = log.lines().find(|l| l.contains(NO_WAY_IN)).unwrap();
    assert!(line.contains("WATCHKEEPER_TOKEN") && line.contains("watchkeeper token") && line.contains("token_sha256"), "{line}");
    // A second revision does not repeat it.
    let first = log.matches("revision applied").count();
    write_tree(&tree, None);
    fs::write(tree.join("more.yaml"), "kind: User\nemail: bob@example.com\nname: Bob\n").unwrap();
    serve.wait_until("the edit is applied", Duration::from_secs(30), || serve.log().matches("revision applied").count() > first);
    assert_eq!(serve.log().matches(NO_WAY_IN).count(), 1, "{}", serve.log());

    // A user with a token is a way in: nothing to say.
    let tree = work.path().join("with-user-token");
    write_tree(&tree, Some(&watchkeeper::token::sha256_hex("alice-token")));
    let serve = Serve::start(&dir_args(&tree, &work.path().join("wk2.db")), &env, &work.path().join("serve2.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.log().contains("revision applied"));
    assert_eq!(status_with(&serve, "alice-token"), 200);
    assert!(!serve.log().contains(NO_WAY_IN), "{}", serve.log());
}

#[test]
fn serve_help_names_the_token_variable() {
    let help = run(&["serve", "--help"]);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("--token <TOKEN>") && help.stdout.contains("[env: WATCHKEEPER_TOKEN"), "{}", help.stdout);
}

#[test]
fn serve_refuses_a_retention_it_cannot_read_and_names_it() {
    let tree = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--retention-events", "5 years", "is not a retention like 36h, 35d or 5y"),
        ("--retention-hours", "0d", "a retention is at least 1h"),
        ("--retention-days", "101y", "is longer than 100 years"),
        ("--retention", "30m", "is not a retention like 36h, 35d or 5y"),
    ] {
        let out = run(&["serve", "--config", tree.path().to_str().unwrap(), flag, value]);
        assert_eq!(out.code, Some(2), "{flag} {value}: {}", out.stderr);
        assert!(out.stderr.contains(says) && out.stderr.contains(value), "{flag} {value}: {}", out.stderr);
    }
    let help = run(&["serve", "--help"]);
    for default in ["--retention-events <AGE>", "[default: 5y]", "--retention-hours <AGE>", "[default: 35d]", "--retention-days <AGE>"] {
        assert!(help.stdout.contains(default), "{default}: {}", help.stdout);
    }
}

#[test]
fn readme_quick_start_exports_the_token_before_starting_serve() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let quick_start = &readme[readme.find("### Quick start").expect("a quick start section")..];
    let export = quick_start.find("export WATCHKEEPER_TOKEN=").expect("the quick start exports WATCHKEEPER_TOKEN");
    let serve = quick_start.find(" serve --config examples/quickstart").expect("the quick start starts serve");
    assert!(export < serve, "the quick start must export the token before the serve command that reads it");
    assert!(!readme.contains("$WATCHKEEPER_ADMIN_TOKEN"), "one name for the operator token");
}

/// Run `serve` on a pseudo-terminal (util-linux `script`) until it logs "serve started", and
/// return what the terminal showed.
fn serve_on_a_terminal(tree: &Path, db: &Path, no_color: Option<&str>) -> String {
    use std::io::Read;
    let command = format!(
        "exec timeout 60 '{}' serve --config '{}' --db 'sqlite://{}' --listen 127.0.0.1:0",
        crate::common::bin_path().display(),
        tree.display(),
        db.display()
    );
    let mut script = std::process::Command::new("script");
    script.args(["-qefc", &command, "/dev/null"]).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    script.env_remove("NO_COLOR").env("WATCHKEEPER_TOKEN", "t").env("WATCHKEEPER_LOG", "info");
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let mut child = script.spawn().expect("util-linux `script` runs a command on a pseudo-terminal");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("serve started") && std::time::Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.contains("serve started"), "serve did not start on the terminal:\n{text}");
    text
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    // Into a file: plain text.
    let serve =
        Serve::start(&dir_args(&tree, &work.path().join("file.db")), &[("NO_COLOR", String::new())], &work.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.log().contains("revision applied"));
    assert!(!serve.log().contains('\u{1b}'), "a log file holds no escape codes:\n{:?}", serve.log());
    drop(serve);
    // On a terminal: colour, unless NO_COLOR is set to anything but the empty string.
    let shown = serve_on_a_terminal(&tree, &work.path().join("tty.db"), None);
    assert!(shown.contains("\u{1b}["), "a terminal gets colour: {shown:?}");
    let shown = serve_on_a_terminal(&tree, &work.path().join("tty-no-color.db"), Some("1"));
    assert!(!shown.contains("\u{1b}["), "NO_COLOR=1 turns colour off: {shown:?}");
}

/// Without `--db`, serve keeps its SQLite database in `data/` under its working directory
/// (created on demand, ignored by git in this repository), and a clean shutdown checkpoints it:
/// no `-wal` or `-shm` file is left beside it, only the lock file that keeps it to one serve.
#[test]
fn serve_keeps_its_database_in_data_and_leaves_no_wal_files_after_a_clean_shutdown() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    let args = vec!["--config".to_string(), tree.display().to_string()];
    let mut serve = Serve::start_in(&args, &[], &work.path().join("serve.log"), work.path());
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    let revision = serve.applied().unwrap();
    let db = work.path().join("data/watchkeeper.db");
    assert!(db.is_file(), "the default database is data/watchkeeper.db\n{}", serve.log());
    let status = serve.terminate();
    assert!(status.success(), "{status}\n{}", serve.log());
    let mut left: Vec<String> =
        fs::read_dir(work.path().join("data")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    // The lock file stays: removing it could let two serves lock two different files.
    assert_eq!(left, ["watchkeeper.db", "watchkeeper.db.lock"], "only the database (and its lock file) is left after a clean shutdown");

    // Everything was checkpointed into the file: a store opened on it finds the revision.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (applied, _) = runtime.block_on(async {
        let store = watchkeeper::store::Store::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        store.latest_revisions().await.unwrap()
    });
    assert_eq!(applied.map(|r| r.revision), Some(revision));

    // This repository ignores the default database.
    let ignored =
        std::process::Command::new("git").args(["check-ignore", "-q", "data/watchkeeper.db"]).current_dir(repo_root()).status().unwrap();
    assert!(ignored.success(), "data/ is in .gitignore");
}

#[test]
fn serve_logs_the_url_to_open_at_start_up() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    let serve = Serve::start(&dir_args(&tree, &work.path().join("wk.db")), &[], &work.path().join("serve.log"));
    serve.wait_until("serve logs that it started", Duration::from_secs(30), || serve.log().contains("serve started"));
    let url = format!("http://127.0.0.1:{}/api/v1/status", serve.port);
    let line = serve.log().lines().find(|l| l.contains("serve started")).unwrap().to_string();
    assert!(line.contains(&format!("status API at {url}")), "{line}");
    assert!(line.contains(&format!("dashboard at http://127.0.0.1:{}/,", serve.port)), "{line}");
}

/// Two serves on one SQLite file would each probe every monitor and fire every alert: the
/// second is refused at start, names the first one's pid and points to PostgreSQL, and leaves
/// the first running; once the first has stopped (even killed), the file can be served again.
#[test]
fn a_second_serve_on_the_same_sqlite_file_is_refused_with_a_clear_message() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    let db = work.path().join("wk.db");
    let mut first = Serve::start(&dir_args(&tree, &db), &[], &work.path().join("first.log"));
    first.wait_until("the tree is applied", Duration::from_secs(30), || first.applied().is_some());

    // The same file under another spelling of its path.
    let other_spelling = format!("sqlite://{}/./wk.db", work.path().display());
    let second = run(&["serve", "--config", tree.to_str().unwrap(), "--db", &other_spelling, "--listen", "127.0.0.1:0"]);
    assert_eq!(second.code, Some(2), "{}", second.output());
    for says in ["another serve (pid ", "already runs on the SQLite database", "wk.db.lock", "PostgreSQL"] {
        assert!(second.stderr.contains(says), "{says}: {}", second.output());
    }
    assert!(!second.stderr.contains("serve started"), "refused before it starts anything: {}", second.output());
    // The first one runs on, undisturbed.
    assert!(first.applied().is_some(), "{}", first.log());

    // A killed serve leaves no stale lock.
    first.kill();
    let third = Serve::start(&dir_args(&tree, &db), &[], &work.path().join("third.log"));
    third.wait_until("the tree is applied", Duration::from_secs(30), || third.applied().is_some());
}

#[test]
fn serve_with_a_public_url_keeps_running() {
    // It once took the read-receipt notice's early return (nothing to warn about with a public
    // URL) for a task that died, and shut down at once.
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree, None);
    let mut args = dir_args(&tree, &work.path().join("wk.db"));
    args.extend(["--public-url".to_string(), "http://127.0.0.1:8080".to_string()]);
    let env = [("WATCHKEEPER_TOKEN", "one-operator-token".to_string())];
    let serve = Serve::start(&args, &env, &work.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.log().contains("revision applied"));
    assert_eq!(status_with(&serve, "one-operator-token"), 200, "{}", serve.log());
    assert!(!serve.log().contains("stopped unexpectedly"), "{}", serve.log());
}
