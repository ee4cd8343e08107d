//! One serve per SQLite file: an exclusive lock on a file beside the database.
//!
//! Two serves on one SQLite file would both probe every monitor and both run the alert engine
//! on the same rows — every alert fired and mailed twice — and SQLite gives them nothing to
//! divide the work with. So serve claims `<database>.lock` (an advisory `flock`) before it opens
//! the database, and a second serve is refused. Not SQLite's own `locking_mode=EXCLUSIVE`: that
//! would lock out `watchkeeper report` and every other reader of the file, and serve's own
//! second pooled connection. The kernel drops the lock when the process ends however it ends
//! (kill -9 too), so there is never a stale lock to remove. A SQLite database in WAL mode lives
//! on one machine's local disk (WAL needs shared memory), where `flock` holds.

use super::{Result, StoreError};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Serve's claim on a SQLite file; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct SqliteClaim {
    _file: File,
}

/// Claim the SQLite database of `url` for this process: `None` for a PostgreSQL URL or an
/// in-memory database (nothing to share), [`StoreError::InUse`] when another process holds it.
/// Creates the database's directory, as [`super::Store::connect`] would.
pub fn claim_sqlite(url: &str) -> Result<Option<SqliteClaim>> {
    let Some(database) = sqlite_file(url) else {
        return Ok(None);
    };
    let io = |e: std::io::Error| StoreError::Db(sqlx::Error::Io(e));
    let lock = lock_path(&database);
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StoreError::InUse { database, lock, holder: holder.trim().to_string() });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Say who holds it, for the message the next one gets.
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "pid {}", std::process::id()).map_err(io)?;
    Ok(Some(SqliteClaim { _file: file }))
}

/// The file of a `sqlite:` URL; `None` for another URL or an in-memory database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
    (!path.is_empty() && !in_memory).then(|| PathBuf::from(path))
}

/// `DIR/NAME.lock` beside `DIR/NAME`.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    database.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(lock_path(Path::new("data/watchkeeper.db")), Path::new("data/watchkeeper.db.lock"));
        assert_eq!(lock_path(Path::new("/var/lib/wk/wk")), Path::new("/var/lib/wk/wk.lock"));
    }

    #[test]
    fn postgres_and_in_memory_databases_need_no_claim() {
        assert!(claim_sqlite("postgres://localhost/x").unwrap().is_none());
        assert!(claim_sqlite("sqlite::memory:").unwrap().is_none());
        assert!(claim_sqlite("sqlite://wk.db?mode=memory&cache=shared").unwrap().is_none());
        assert_eq!(sqlite_file("sqlite:data/wk.db?mode=rwc"), Some(PathBuf::from("data/wk.db")));
    }

    #[test]
    fn a_second_claim_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sub/wk.db").display());
        let first = claim_sqlite(&url).unwrap().expect("a claim");
        match claim_sqlite(&url) {
            Err(StoreError::InUse { holder, .. }) => assert_eq!(holder, format!("pid {}", std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        assert!(claim_sqlite(&url).unwrap().is_some());
    }
}
