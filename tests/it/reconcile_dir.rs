//! `watchkeeper serve --config DIR` as files change under it: broken trees recorded as they are,
//! a file half-way written never applied, a removed project's alerts resolved with a mail, a
//! revision that removes most of the tree held.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::free_port;
use crate::support::serve::{OPERATOR, Serve};
use crate::support::smtp::SmtpServer;

/// The user who reads the status API.
fn users() -> String {
    format!("kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n", watchkeeper::token::sha256_hex(OPERATOR))
}

/// A work directory with a tree in `tree/` holding the user who reads the status API.
fn new_tree() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tree");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("users.yaml"), users()).unwrap();
    (work, dir)
}

/// serve following `dir`, on a SQLite database beside it, with `extra` arguments.
fn serve_dir(work: &Path, dir: &Path, extra: &[&str]) -> Serve {
    let mut args: Vec<String> =
        vec!["--config".into(), dir.display().to_string(), "--db".into(), format!("sqlite://{}", work.join("wk.db").display())];
    args.extend(extra.iter().map(|a| a.to_string()));
    Serve::start(&args, &[], &work.join("serve.log"))
}

/// The diagnostics of the newest rejected revision, if any.
fn rejected(serve: &Serve) -> Vec<Value> {
    serve.get("/api/v1/status")["rejected"]["diagnostics"].as_array().cloned().unwrap_or_default()
}

#[test]
fn each_broken_tree_is_recorded_and_the_status_shows_its_own_error() {
    let (work, dir) = new_tree();
    let big = dir.join("servers.yaml");
    // Sparse files: their size is all that is read of them.
    fs::File::create(&big).unwrap().set_len(25 * 1024 * 1024).unwrap();
    let serve = serve_dir(work.path(), &dir, &[]);
    let shows = |rule: &str, text: &str| {
        rejected(&serve).iter().any(|d| d["rule"] == rule && d["message"].as_str().is_some_and(|m| m.contains(text)))
    };
    serve.wait_until("the 25 MB file is rejected", Duration::from_secs(30), || shows("file-too-large", "26214400 bytes"));
    let first_id = serve.get("/api/v1/status")["rejected"]["revision"].clone();

    fs::File::create(&big).unwrap().set_len(50 * 1024 * 1024).unwrap();
    serve.wait_until("the 50 MB file is rejected in its turn", Duration::from_secs(30), || shows("file-too-large", "52428800 bytes"));
    let status = serve.get("/api/v1/status");
    assert_ne!(status["rejected"]["revision"], first_id, "{status}");

    fs::write(&big, b"kind: Server\nname: caf\xe9\n").unwrap();
    serve.wait_until("the file that is not UTF-8 is rejected in its turn", Duration::from_secs(30), || {
        shows("invalid-utf8", "not valid UTF-8")
    });
    let status = serve.get("/api/v1/status");
    assert_eq!(status["reconcile"], "rejected", "{status}");
    assert!(status["applied"].is_null(), "nothing good was ever applied: {status}");
}

#[test]
fn removing_a_project_resolves_its_alert_and_mails_the_resolve_to_who_heard_it_fire() {
    let (work, dir) = new_tree();
    let smtp = SmtpServer::start();
    let closed = free_port();
    fs::write(dir.join("users.yaml"), format!("{}notify: {{ email: true }}\n", users())).unwrap();
    fs::write(
        dir.join("channels.yaml"),
        format!(
            "kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {}, tls: none }}\nfrom: \"watchkeeper <alerts@example.com>\"\n",
            smtp.port
        ),
    )
    .unwrap();
    fs::write(dir.join("shop.yaml"), "kind: Project\nname: shop\nmembers: [{ user: alice@example.com, role: admin }]\nchannels: [mail]\n")
        .unwrap();
    fs::write(
        dir.join("lab.yaml"),
        format!(
            "kind: Project\nname: lab\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: [mail]\n---\n\
             kind: PortMonitor\nname: bench\nproject: lab\nhost: 127.0.0.1\nports: [{closed}]\ninterval: 1s\ntimeout: 500ms\nfailures: 1\n"
        ),
    )
    .unwrap();
    let serve = serve_dir(work.path(), &dir, &[]);
    let fired = smtp.wait_for(1, Duration::from_secs(60));
    assert!(fired[0].subject.contains("Alert fired") && fired[0].subject.contains("bench"), "{fired:?}");
    let first = serve.applied().unwrap();

    fs::remove_file(dir.join("lab.yaml")).unwrap();
    serve.wait_until("the removal is applied", Duration::from_secs(30), || serve.applied().is_some_and(|r| r != first));
    let mails = smtp.wait_for(2, Duration::from_secs(60));
    let resolved = &mails[1];
    assert!(resolved.subject.contains("Resolved") && resolved.subject.contains("bench"), "{mails:?}");
    assert_eq!(resolved.to, fired[0].to, "the resolve goes to whoever heard it fire");
    assert!(resolved.body.contains(&format!("removed in {}", serve.applied().unwrap())), "{}", resolved.body);
    serve.wait_until("the outbox is empty", Duration::from_secs(30), || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    assert_eq!(smtp.messages().len(), 2, "one fired and one resolved mail: {:?}", smtp.messages());
}

/// Six PortMonitors of project shop, `{name}0`…`{name}5`, on closed ports from `base`: one
/// document each.
fn monitors(name: &str, base: u16) -> Vec<String> {
    (0..6u16)
        .map(|i| {
            format!(
                "kind: PortMonitor\nname: {name}{i}\nproject: shop\nhost: 127.0.0.1\nports: [{}]\ninterval: 1h\ntimeout: 500ms\n",
                base + i
            )
        })
        .collect()
}

/// The id serve gives the tree in `dir` as it is now.
fn content_id(dir: &Path) -> String {
    let library = watchkeeper::config::Library::Builtin;
    watchkeeper::reconcile::source::content_revision(&watchkeeper::config::load_dir(dir, &library))
}

#[test]
fn a_file_written_in_two_halves_with_a_pause_is_never_applied_half_written() {
    let (work, dir) = new_tree();
    fs::write(dir.join("shop.yaml"), "kind: Project\nname: shop\nmembers: [{ user: alice@example.com, role: admin }]\n").unwrap();
    let servers = dir.join("monitors.yaml");
    fs::write(&servers, monitors("m", 40000).join("---\n")).unwrap();
    let serve = serve_dir(work.path(), &dir, &[]);
    let first = content_id(&dir);
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().as_ref() == Some(&first));

    for round in 1..=3u16 {
        // Each half is valid YAML on its own: three whole monitors out of six.
        let docs = monitors("m", 40000 + 10 * round);
        let mut file = fs::File::create(&servers).unwrap();
        file.write_all(docs[..3].join("---\n").as_bytes()).unwrap();
        // Longer than file events take to arrive, shorter than serve's default settle period.
        std::thread::sleep(Duration::from_millis(600));
        file.write_all(format!("---\n{}", docs[3..].join("---\n")).as_bytes()).unwrap();
        drop(file);
        let whole = content_id(&dir);
        serve.wait_until("the whole file is applied", Duration::from_secs(30), || serve.applied().as_ref() == Some(&whole));
    }
    let log = serve.log();
    let applied: Vec<&str> = log.lines().filter(|l| l.contains("revision applied")).collect();
    assert_eq!(applied.len(), 4, "the first tree and three whole files: {applied:#?}");
    assert!(applied.iter().all(|l| l.contains("monitors=6")), "never three monitors: {applied:#?}");
}

/// A tree — a user, project shop and twelve monitors in `monitors.yaml` — followed by a serve
/// with `extra` arguments, once its first revision is applied. With the four policies of the
/// built-in library, emptying `monitors.yaml` removes 12 of 18 objects.
fn serve_twelve_monitors(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Serve) {
    let (work, dir) = new_tree();
    fs::write(dir.join("shop.yaml"), "kind: Project\nname: shop\nmembers: [{ user: alice@example.com, role: admin }]\n").unwrap();
    let twelve = [monitors("a", 40100), monitors("b", 40200)].concat();
    fs::write(dir.join("monitors.yaml"), twelve.join("---\n")).unwrap();
    let serve = serve_dir(work.path(), &dir, extra);
    let first = content_id(&dir);
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().as_ref() == Some(&first));
    (work, dir, serve)
}

fn monitor_count(serve: &Serve) -> usize {
    serve.get("/api/v1/projects/shop/monitors")["port_monitors"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_revision_removing_most_objects_is_held_and_shown_until_it_is_undone() {
    let (_work, dir, serve) = serve_twelve_monitors(&[]);
    let first = serve.applied().unwrap();
    let monitors_file = dir.join("monitors.yaml");
    let text = fs::read_to_string(&monitors_file).unwrap();
    // Emptied to 0 bytes: twelve of the eighteen objects would go.
    fs::File::create(&monitors_file).unwrap();
    let emptied = content_id(&dir);
    serve.wait_until("the emptied file is held", Duration::from_secs(30), || serve.get("/api/v1/status")["reconcile"] == "held");
    let status = serve.get("/api/v1/status");
    assert_eq!(status["held"]["revision"], emptied.as_str(), "{status}");
    assert_eq!(status["applied"]["revision"], first.as_str(), "the last good revision runs on: {status}");
    let held_for = status["held"]["held_until_ms"].as_i64().unwrap() - status["held"]["at_ms"].as_i64().unwrap();
    assert_eq!(held_for, 5 * 60 * 1000, "held 5 minutes by default: {status}");
    let reason = status["held"]["diagnostics"].as_array().unwrap().iter().find(|d| d["rule"] == "mass-removal").cloned();
    assert!(reason.as_ref().and_then(|r| r["message"].as_str()).is_some_and(|m| m.contains("removes 12 of the 18")), "{status}");
    assert_eq!(monitor_count(&serve), 12, "nothing was removed");

    // Put back: the held revision is gone, the tree as it was runs on.
    fs::write(&monitors_file, text).unwrap();
    serve.wait_until("the put-back tree is applied", Duration::from_secs(30), || serve.get("/api/v1/status")["reconcile"] == "ok");
    let status = serve.get("/api/v1/status");
    assert_eq!(status["applied"]["revision"], first.as_str(), "{status}");
    assert!(status["held"].is_null(), "{status}");
    assert_eq!(monitor_count(&serve), 12);
}

#[test]
fn a_held_revision_is_applied_once_it_stays_the_newest_for_the_hold_period() {
    let (_work, dir, serve) = serve_twelve_monitors(&["--mass-removal-hold", "2s"]);
    fs::File::create(dir.join("monitors.yaml")).unwrap();
    let emptied = content_id(&dir);
    serve.wait_until("the emptied tree is applied", Duration::from_secs(30), || serve.applied().as_ref() == Some(&emptied));
    assert_eq!(monitor_count(&serve), 0);
    let log = serve.log();
    let held = log.find("held, and applied once it has stayed the newest revision").unwrap_or_else(|| panic!("held first:\n{log}"));
    let applied = log.find("applying the held revision").unwrap_or_else(|| panic!("then applied:\n{log}"));
    assert!(held < applied, "{log}");
}

#[test]
fn allow_mass_removal_applies_such_a_revision_at_once() {
    let (_work, dir, serve) = serve_twelve_monitors(&["--allow-mass-removal"]);
    fs::File::create(dir.join("monitors.yaml")).unwrap();
    let emptied = content_id(&dir);
    serve.wait_until("the emptied tree is applied", Duration::from_secs(30), || serve.applied().as_ref() == Some(&emptied));
    assert_eq!(monitor_count(&serve), 0);
    let log = serve.log();
    assert!(log.contains("as --allow-mass-removal says") && !log.contains("held, and applied"), "{log}");
}
