//! Where revisions come from: a local directory (watched, plus a periodic rescan) or a git
//! branch (cloned into a work directory and polled). Each yields a [`Revision`]: the tree
//! loaded through the same path as lint, and its revision.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::load::{self, ParseCache};
use crate::config::{self, Library, Loaded};

#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A directory, watched for changes and rescanned every `rescan`; read only once it has
    /// been left alone for `settle` (see [`follow`]).
    Dir { dir: PathBuf, rescan: Duration, settle: Duration },
    /// A git branch: cloned into `workdir`, fetched every `poll`; `subdir` is the tree's
    /// folder inside the repository.
    Git { url: String, branch: String, workdir: PathBuf, subdir: Option<PathBuf>, poll: Duration },
}

/// A revision of the tree, loaded and compiled.
pub struct Revision {
    /// The git commit, or `sha256:` and the first 16 hex digits of the tree's content hash.
    pub id: String,
    pub loaded: Loaded,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("git {args} failed: {stderr}")]
    Git { args: String, stderr: String },
}

/// The content hash of a loaded tree's own files (paths and text), as a revision. What could
/// not be read counts as it was seen (path, size and modification time, or the error): two
/// broken trees differ in id whenever what was seen of them differs, so each is recorded.
pub fn content_revision(loaded: &Loaded) -> String {
    let mut hash = Sha256::new();
    for file in &loaded.sources.files[..loaded.sources.tree_files] {
        hash.update(file.path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(file.text.as_bytes());
        hash.update([0]);
    }
    for (path, seen) in &loaded.sources.unread {
        hash.update([1]);
        hash.update(path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(seen.as_bytes());
        hash.update([0]);
    }
    let hex: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, SourceError> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    // Never wait for a credential prompt: serve runs unattended.
    let out = cmd.args(args).env("GIT_TERMINAL_PROMPT", "0").stdin(std::process::Stdio::null()).output()?;
    if !out.status.success() {
        return Err(SourceError::Git { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Bring `workdir` to the branch's newest commit (cloning it the first time); returns the commit.
pub fn git_sync(url: &str, branch: &str, workdir: &Path) -> Result<String, SourceError> {
    if !workdir.join(".git").exists() {
        if let Some(parent) = workdir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let target = workdir.to_string_lossy();
        git(None, &["clone", "--quiet", "--no-checkout", "--branch", branch, url, &target])?;
    } else {
        git(Some(workdir), &["fetch", "--quiet", "origin", &format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")])?;
    }
    let commit = git(Some(workdir), &["rev-parse", &format!("refs/remotes/origin/{branch}^{{commit}}")])?;
    git(Some(workdir), &["checkout", "--quiet", "--force", "--detach", &commit])?;
    git(Some(workdir), &["clean", "--quiet", "-fdx"])?;
    Ok(commit)
}

/// Load the current revision once (blocking: file and git I/O). Only files changed since
/// `cache` last saw them are parsed again.
pub fn read_once(spec: &SourceSpec, library: &Library, cache: &mut ParseCache) -> Result<Revision, SourceError> {
    match spec {
        SourceSpec::Dir { dir, .. } => {
            let loaded = config::load_dir_cached(dir, library, cache);
            Ok(Revision { id: content_revision(&loaded), loaded })
        }
        SourceSpec::Git { url, branch, workdir, subdir, .. } => {
            let commit = git_sync(url, branch, workdir)?;
            let tree = subdir.as_ref().map_or_else(|| workdir.clone(), |s| workdir.join(s));
            Ok(Revision { id: commit, loaded: config::load_dir_cached(&tree, library, cache) })
        }
    }
}

/// Follow the source until cancelled, sending each new revision (and the first) to `out`.
/// A source that fails to read (git unreachable) is logged and retried on the next tick.
///
/// A directory is read only once it has settled — no change event for its `settle` period, and
/// every file's size and modification time the same at both ends of it — and what was read is
/// kept only if nothing changed while it was read: an editor or a copy half-way through a file
/// must not be applied as a revision (a truncated file can be valid YAML that removes half a
/// project).
pub async fn follow(spec: SourceSpec, library: Library, out: mpsc::Sender<Revision>, cancel: CancellationToken) {
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    // Keep the watcher alive for as long as we follow; dropping it stops watching.
    let _watcher = match &spec {
        SourceSpec::Dir { dir, .. } => watch_dir(dir, changed_tx),
        SourceSpec::Git { .. } => None,
    };
    let every = match &spec {
        SourceSpec::Dir { rescan, .. } => *rescan,
        SourceSpec::Git { poll, .. } => *poll,
    };
    let mut last: Option<String> = None;
    let mut cache = ParseCache::default();
    loop {
        let settled = match &spec {
            SourceSpec::Dir { dir, settle: quiet, .. } => match settle(dir, *quiet, &mut changed, &cancel).await {
                Some(stamps) => Some(stamps),
                None => return,
            },
            SourceSpec::Git { .. } => None,
        };
        let (spec2, library2, mut cache2) = (spec.clone(), library.clone(), std::mem::take(&mut cache));
        let read = tokio::task::spawn_blocking(move || {
            let result = read_once(&spec2, &library2, &mut cache2);
            (result, cache2)
        });
        match read.await.map(|(result, used)| {
            cache = used;
            result
        }) {
            Ok(Ok(revision)) => {
                if let (Some(before), SourceSpec::Dir { dir, .. }) = (&settled, &spec)
                    && stamps(dir).await != *before
                {
                    tracing::debug!("the configuration changed while it was read; reading it again once it settles");
                    continue;
                }
                tracing::debug!(revision = %revision.id, "configuration read");
                if last.as_deref() != Some(revision.id.as_str()) {
                    last = Some(revision.id.clone());
                    if out.send(revision).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the configuration source; retrying"),
            Err(e) => tracing::error!(error = %e, "configuration reader panicked; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            Some(()) = changed.recv() => {}
        }
    }
}

/// Wait until the tree under `dir` has settled: no change event for `quiet`, and the same
/// [`load::stamps`] at both ends of it. Returns those, or `None` once cancelled.
async fn settle(
    dir: &Path,
    quiet: Duration,
    changed: &mut mpsc::Receiver<()>,
    cancel: &CancellationToken,
) -> Option<Vec<(PathBuf, String)>> {
    /// Say so when a tree keeps changing for this many quiet periods.
    const PATIENCE: u32 = 60;
    let mut before = stamps(dir).await;
    let mut rounds = 0u32;
    loop {
        let changed_meanwhile = tokio::select! {
            _ = cancel.cancelled() => return None,
            Some(()) = changed.recv() => true,
            _ = tokio::time::sleep(quiet) => false,
        };
        let now = stamps(dir).await;
        if !changed_meanwhile && now == before {
            return Some(now);
        }
        before = now;
        rounds += 1;
        if rounds == PATIENCE {
            tracing::warn!(dir = %dir.display(), ?quiet, "the configuration directory keeps changing; waiting for it to settle before reading it");
        }
    }
}

async fn stamps(dir: &Path) -> Vec<(PathBuf, String)> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || load::stamps(&dir)).await.unwrap_or_default()
}

/// Watch a directory recursively; every debounced batch of events is one "something changed".
fn watch_dir(
    dir: &Path,
    changed: mpsc::Sender<()>,
) -> Option<notify_debouncer_full::Debouncer<notify::RecommendedWatcher, notify_debouncer_full::RecommendedCache>> {
    let handler = move |result: notify_debouncer_full::DebounceEventResult| {
        // Reading the tree ourselves raises access events (open, close-without-write): only
        // changes count, or every reload would trigger the next one.
        let changed_something = |events: &Vec<notify_debouncer_full::DebouncedEvent>| {
            events.iter().any(|e| !matches!(e.event.kind, notify::EventKind::Access(_)))
        };
        if result.is_ok_and(|events| changed_something(&events)) {
            // Full means a rescan is already queued; that is enough.
            let _ = changed.try_send(());
        }
    };
    let mut debouncer = match notify_debouncer_full::new_debouncer(Duration::from_millis(300), None, handler) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration directory; relying on the periodic rescan");
            return None;
        }
    };
    if let Err(e) = debouncer.watch(dir, notify::RecursiveMode::Recursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the configuration directory; relying on the periodic rescan");
        return None;
    }
    Some(debouncer)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::content_revision;
    use crate::config::{Library, load_dir};

    const USERS: &str = "kind: User\nemail: alice@example.com\nname: Alice\n";

    fn id_of(dir: &Path) -> String {
        content_revision(&load_dir(dir, &Library::Builtin))
    }

    /// `servers.yaml` as `len` bytes of nothing (a sparse file: nothing is written).
    fn sized(dir: &Path, len: u64) -> String {
        fs::File::create(dir.join("servers.yaml")).unwrap().set_len(len).unwrap();
        id_of(dir)
    }

    #[test]
    fn files_that_cannot_be_read_count_in_the_revision_as_they_were_seen() {
        let tree = tempfile::tempdir().unwrap();
        fs::write(tree.path().join("users.yaml"), USERS).unwrap();
        let readable = id_of(tree.path());
        let big = sized(tree.path(), 25 * 1024 * 1024);
        let bigger = sized(tree.path(), 50 * 1024 * 1024);
        fs::write(tree.path().join("servers.yaml"), b"kind: Server\nname: caf\xe9\n").unwrap();
        let not_utf8 = id_of(tree.path());
        fs::write(tree.path().join("servers.yaml"), b"kind: Server\nname: caf\xe9\xe9\n").unwrap();
        let other_not_utf8 = id_of(tree.path());
        let ids = [&readable, &big, &bigger, &not_utf8, &other_not_utf8];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b, "{ids:?}");
            }
        }
        // What was seen is all that counts: the same tree read again has the same id.
        assert_eq!(id_of(tree.path()), other_not_utf8);
    }

    #[test]
    fn an_unreadable_root_is_not_the_hash_of_nothing() {
        const NOTHING: &str = "sha256:e3b0c44298fc1c14"; // SHA-256 of no bytes
        let work = tempfile::tempdir().unwrap();
        let empty = work.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert_eq!(id_of(&empty), NOTHING, "an empty tree has nothing to hash");
        let missing = id_of(&work.path().join("missing"));
        let file = work.path().join("a-file");
        fs::write(&file, USERS).unwrap();
        let not_a_dir = id_of(&file);
        assert_ne!(missing, NOTHING);
        assert_ne!(not_a_dir, NOTHING);
        assert_ne!(missing, not_a_dir, "each error is what was seen");
    }
}
