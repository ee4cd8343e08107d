//! `watchkeeper serve --config DIR` as files change under it: broken trees recorded as they are.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::serve::{OPERATOR, Serve};

/// The user who reads the status API.
fn users() -> String {
    format!("kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n", watchkeeper::token::sha256_hex(OPERATOR))
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
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tree");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("users.yaml"), users()).unwrap();
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
