//! Log tailing for LogPolicy keyword rules: follows files by path or glob, reads only what was
//! appended since the last poll, survives rotation and truncation, and remembers where it was in a
//! small JSON state file so that an agent restart does not report old lines again.
//!
//! Where a file starts:
//! - seen in the first poll with no saved state: at its end (an existing big log is not replayed);
//! - in the saved state, same file (device + inode): at the saved offset (0 if it shrank);
//! - anything else — a file created after the tailer started, the new file after a rotation, a
//!   file replaced while the agent was down, a truncated file: at its beginning.
//!
//! Rotation by rename keeps the old file open: its remaining lines are read (and lines written to
//! it late, before the writer reopens) until a poll finds nothing new, then it is closed. A file
//! renamed to a name the rules also match is followed under its new name, not read again.
//!
//! Identity is (device, inode), so rotation is recognised on Unix; elsewhere a replaced file is only
//! noticed when it is smaller than the place reached (and then read from its beginning).
//!
//! Each poll reads at most [`TailLimits::max_bytes_per_poll`] bytes and
//! [`TailLimits::max_lines_per_poll`] lines, over all files, starting with a different file each
//! poll so that a busy log cannot starve a quiet one. Lines longer than
//! [`TailLimits::max_line_bytes`] are cut; the rest of such a line is skipped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One keyword rule: lines of the files `pattern` names that contain `keyword`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRule {
    /// A path, or a glob (`/var/log/nginx/*.log`) when it contains `*`, `?` or `[`.
    pub pattern: String,
    /// Matched as a plain, case-sensitive substring of the line.
    pub keyword: String,
}

/// Bounds on the work of one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailLimits {
    pub max_bytes_per_poll: usize,
    pub max_lines_per_poll: usize,
    /// Longer lines are cut to this many bytes.
    pub max_line_bytes: usize,
}

impl Default for TailLimits {
    fn default() -> Self {
        TailLimits { max_bytes_per_poll: 4 << 20, max_lines_per_poll: 20_000, max_line_bytes: 4096 }
    }
}

/// A line that contains a rule's keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub file: PathBuf,
    /// 1-based, when the tailer has read the file from its beginning (not when it started at the
    /// end of an existing file).
    pub line_no: Option<u64>,
    /// The line without its line ending, cut to `max_line_bytes`, invalid UTF-8 replaced.
    pub line: String,
    /// Index of the rule in the list given to [`Tailer::new`].
    pub rule_index: usize,
}

/// Why a tailer could not be set up or could not save its place.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("rule {index}: invalid glob `{pattern}`")]
    Pattern {
        index: usize,
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("rule {index}: the keyword is empty")]
    EmptyKeyword { index: usize },
    #[error("cannot read the tail state file {path}")]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the tail state file {path} is not valid")]
    ParseState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the tail state file {path}")]
    WriteState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file's identity across renames: (device, inode). Unknown where the platform gives none.
type FileId = Option<(u64, u64)>;

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> FileId {
    None
}

/// The state file: where each file was left.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    files: Vec<SavedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedFile {
    path: PathBuf,
    device: Option<u64>,
    inode: Option<u64>,
    offset: u64,
    line_no: Option<u64>,
    #[serde(default)]
    skipping: bool,
}

impl SavedFile {
    fn id(&self) -> FileId {
        self.device.zip(self.inode)
    }
}

/// An open file and the place reading has reached in it.
#[derive(Debug)]
struct Cursor {
    file: File,
    id: FileId,
    /// Start of the first byte not yet consumed (a partial last line is not consumed).
    offset: u64,
    /// Lines consumed so far, when counted from the beginning.
    line_no: Option<u64>,
    /// In the middle of an over-long line whose start was already reported.
    skipping: bool,
    /// Rules that apply to this file.
    rules: Vec<usize>,
}

/// A rotated-away file still being drained.
#[derive(Debug)]
struct Retired {
    path: PathBuf,
    cursor: Cursor,
    since_poll: u64,
}

/// What a scan found at one path.
struct Found {
    id: FileId,
    len: u64,
    rules: Vec<usize>,
}

/// Follows the files of a set of keyword rules.
#[derive(Debug)]
pub struct Tailer {
    rules: Vec<TailRule>,
    limits: TailLimits,
    state_path: Option<PathBuf>,
    /// Entries of the state file not yet matched to a file.
    saved: HashMap<PathBuf, SavedFile>,
    files: BTreeMap<PathBuf, Cursor>,
    retired: Vec<Retired>,
    polls: u64,
    /// Files that could not be opened, so the warning is logged once.
    unreadable: std::collections::BTreeSet<PathBuf>,
    last_saved: Option<String>,
}

impl Tailer {
    /// A tailer for `rules`, resuming from `state_path` if that file exists (it is created by the
    /// first poll otherwise). Without a state path nothing is remembered across restarts.
    pub fn new(rules: Vec<TailRule>, limits: TailLimits, state_path: Option<PathBuf>) -> Result<Self, TailError> {
        for (index, rule) in rules.iter().enumerate() {
            if rule.keyword.is_empty() {
                return Err(TailError::EmptyKeyword { index });
            }
            if is_glob(&rule.pattern) {
                glob::Pattern::new(&rule.pattern).map_err(|source| TailError::Pattern { index, pattern: rule.pattern.clone(), source })?;
            }
        }
        let mut saved = HashMap::new();
        if let Some(path) = &state_path {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let state: State =
                        serde_json::from_str(&text).map_err(|source| TailError::ParseState { path: path.clone(), source })?;
                    saved = state.files.into_iter().map(|f| (f.path.clone(), f)).collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(TailError::ReadState { path: path.clone(), source }),
            }
        }
        // A line must fit in one poll's byte budget, or an over-long line could never be cut.
        let limits = TailLimits {
            max_line_bytes: limits.max_line_bytes.max(1),
            max_bytes_per_poll: limits.max_bytes_per_poll.max(limits.max_line_bytes.max(1) + 1),
            max_lines_per_poll: limits.max_lines_per_poll.max(1),
        };
        Ok(Tailer {
            rules,
            limits,
            state_path,
            saved,
            files: BTreeMap::new(),
            retired: Vec::new(),
            polls: 0,
            unreadable: Default::default(),
            last_saved: None,
        })
    }

    /// Reads what was appended since the last poll and returns the lines that match a rule, in
    /// file order. Saves the state file when the position changed (a failure is logged; the next
    /// poll tries again).
    pub fn poll(&mut self) -> Vec<Hit> {
        let first_poll = self.polls == 0;
        self.polls += 1;
        let mut budget = Budget { bytes: self.limits.max_bytes_per_poll, lines: self.limits.max_lines_per_poll };
        let mut hits = Vec::new();
        let found = self.scan();

        // 1. A tracked file that now appears under another matched name was renamed: follow it.
        let renames: Vec<(PathBuf, PathBuf)> = self
            .files
            .iter()
            .filter(|(path, c)| c.id.is_some() && found.get(*path).map(|f| f.id) != Some(c.id))
            .filter_map(|(path, c)| {
                let (to, _) = found.iter().find(|(q, f)| f.id == c.id && !self.files.contains_key(*q))?;
                Some((path.clone(), to.clone()))
            })
            .collect();
        for (from, to) in renames {
            if let (Some(mut cursor), Some(f)) = (self.files.remove(&from), found.get(&to)) {
                cursor.rules = f.rules.clone();
                self.files.insert(to, cursor);
            }
        }

        // 2. A tracked file that is gone or replaced is retired: drained, then closed.
        let gone: Vec<PathBuf> =
            self.files.iter().filter(|(p, c)| found.get(*p).is_none_or(|f| f.id != c.id)).map(|(p, _)| p.clone()).collect();
        for path in gone {
            if let Some(cursor) = self.files.remove(&path) {
                self.retired.push(Retired { path, cursor, since_poll: self.polls });
            }
        }
        let polls = self.polls;
        let limits = self.limits;
        let rules = &self.rules;
        self.retired.retain_mut(|r| {
            let read = read_lines(&mut r.cursor, &r.path, rules, limits, &mut budget, &mut hits, false);
            let idle = read.consumed == 0 && read.at_eof;
            if idle && r.since_poll < polls {
                // Nothing new for a whole poll: flush a last line without its newline, then close.
                read_lines(&mut r.cursor, &r.path, rules, limits, &mut budget, &mut hits, true);
                false
            } else {
                true
            }
        });

        // 3. New files start where the module docs say; truncated files start again at 0.
        for (path, f) in &found {
            match self.files.get_mut(path) {
                Some(c) => {
                    c.rules = f.rules.clone();
                    if f.len < c.offset {
                        tracing::info!(path = %path.display(), "log file truncated; reading it from the start");
                        c.offset = 0;
                        c.line_no = Some(0);
                        c.skipping = false;
                    }
                }
                None => {
                    // Moved away and back while being drained: the same file, resumed.
                    if let Some(i) = self.retired.iter().position(|r| r.cursor.id.is_some() && r.cursor.id == f.id) {
                        let mut cursor = self.retired.swap_remove(i).cursor;
                        cursor.rules = f.rules.clone();
                        self.files.insert(path.clone(), cursor);
                        continue;
                    }
                    let at_path = self.saved.remove(path);
                    let replaced = at_path.as_ref().is_some_and(|s| s.id() != f.id);
                    let saved = at_path.filter(|s| s.id() == f.id).or_else(|| {
                        // Renamed while the agent was down: the same file under another name.
                        let key = self.saved.iter().find(|(_, s)| s.id().is_some() && s.id() == f.id).map(|(k, _)| k.clone())?;
                        self.saved.remove(&key)
                    });
                    let (offset, line_no, skipping) = match saved {
                        Some(s) if s.offset <= f.len => (s.offset, s.line_no, s.skipping),
                        Some(_) => (0, Some(0), false),
                        None if first_poll && !replaced => (f.len, None, false),
                        None => (0, Some(0), false),
                    };
                    match File::open(path) {
                        Ok(file) => {
                            self.unreadable.remove(path);
                            self.files.insert(path.clone(), Cursor { file, id: f.id, offset, line_no, skipping, rules: f.rules.clone() });
                        }
                        Err(error) => {
                            if self.unreadable.insert(path.clone()) {
                                tracing::warn!(path = %path.display(), %error, "cannot open log file; its rules are not checked");
                            }
                        }
                    }
                }
            }
        }

        // 4. Read, starting with a different file each poll.
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        let start = if paths.is_empty() { 0 } else { (self.polls as usize) % paths.len() };
        for path in paths[start..].iter().chain(&paths[..start]) {
            if let Some(c) = self.files.get_mut(path) {
                read_lines(c, path, rules, limits, &mut budget, &mut hits, false);
            }
        }

        // Saved places not matched by now belong to files that are gone.
        self.saved.clear();
        if let Err(error) = self.save_state() {
            tracing::warn!(error = %error, "cannot save the log tail state; lines may be reported again after a restart");
        }
        hits
    }

    /// Writes the state file (atomically: a temporary file renamed over it) if it changed.
    pub fn save_state(&mut self) -> Result<(), TailError> {
        let Some(path) = &self.state_path else { return Ok(()) };
        let mut files: Vec<SavedFile> = self
            .files
            .iter()
            .map(|(p, c)| SavedFile {
                path: p.clone(),
                device: c.id.map(|id| id.0),
                inode: c.id.map(|id| id.1),
                offset: c.offset,
                line_no: c.line_no,
                skipping: c.skipping,
            })
            .collect();
        // Before the first poll, the loaded places are still the whole truth.
        files.extend(self.saved.values().cloned());
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let text = serde_json::to_string_pretty(&State { version: 1, files }).unwrap_or_default();
        if self.last_saved.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| TailError::WriteState { path: path.clone(), source })?;
        self.last_saved = Some(text);
        Ok(())
    }

    /// Every file the rules match now, with the rules that apply to it.
    fn scan(&self) -> BTreeMap<PathBuf, Found> {
        let mut found: BTreeMap<PathBuf, Found> = BTreeMap::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let paths: Vec<PathBuf> = if is_glob(&rule.pattern) {
                match glob::glob(&rule.pattern) {
                    Ok(paths) => paths.filter_map(Result::ok).collect(),
                    Err(_) => Vec::new(), // checked in `new`
                }
            } else {
                vec![PathBuf::from(&rule.pattern)]
            };
            for path in paths {
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                found.entry(path).or_insert_with(|| Found { id: file_id(&meta), len: meta.len(), rules: Vec::new() }).rules.push(index);
            }
        }
        found
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

struct Budget {
    bytes: usize,
    lines: usize,
}

struct ReadOutcome {
    /// Bytes consumed (complete lines, or cut and closing ones).
    consumed: u64,
    /// The read reached the end of the file (a partial last line may be left unconsumed).
    at_eof: bool,
}

/// Reads complete lines from `c.offset` within the budget and records the hits. A last line
/// without a newline is left for the next poll unless `closing`, or unless it is already too long.
fn read_lines(
    c: &mut Cursor,
    path: &Path,
    rules: &[TailRule],
    limits: TailLimits,
    budget: &mut Budget,
    hits: &mut Vec<Hit>,
    closing: bool,
) -> ReadOutcome {
    let mut consumed = 0u64;
    let mut buf = Vec::new();
    loop {
        if budget.bytes == 0 || budget.lines == 0 {
            return ReadOutcome { consumed, at_eof: false };
        }
        let want = budget.bytes.min(256 << 10).max(limits.max_line_bytes + 1);
        buf.clear();
        let read = c.file.seek(SeekFrom::Start(c.offset)).and_then(|_| (&mut c.file).take(want as u64).read_to_end(&mut buf));
        if let Err(error) = read {
            tracing::warn!(path = %path.display(), %error, "cannot read log file");
            return ReadOutcome { consumed, at_eof: true };
        }
        let at_eof = buf.len() < want;
        budget.bytes = budget.bytes.saturating_sub(buf.len());

        let mut pos = 0;
        while budget.lines > 0 {
            let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else { break };
            let line = &buf[pos..pos + nl];
            if c.skipping {
                c.skipping = false; // the end of a line already reported
            } else {
                emit(c, path, rules, line, limits, hits);
            }
            pos += nl + 1;
            budget.lines -= 1;
        }
        let rest = buf.len() - pos;
        if budget.lines > 0 && rest > 0 {
            if c.skipping {
                pos = buf.len(); // still inside an over-long line: discard
            } else if rest >= limits.max_line_bytes || (closing && at_eof) {
                emit(c, path, rules, &buf[pos..], limits, hits);
                c.skipping = !(closing && at_eof);
                pos = buf.len();
                budget.lines -= 1;
            }
        }
        c.offset += pos as u64;
        consumed += pos as u64;
        if at_eof || pos == 0 {
            return ReadOutcome { consumed, at_eof };
        }
    }
}

fn emit(c: &mut Cursor, path: &Path, rules: &[TailRule], line: &[u8], limits: TailLimits, hits: &mut Vec<Hit>) {
    c.line_no = c.line_no.map(|n| n + 1);
    let line = &line[..line.len().min(limits.max_line_bytes)];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    for &rule_index in &c.rules {
        if text.contains(rules[rule_index].keyword.as_str()) {
            hits.push(Hit { file: path.to_path_buf(), line_no: c.line_no, line: text.clone().into_owned(), rule_index });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rule(pattern: &Path, keyword: &str) -> TailRule {
        TailRule { pattern: pattern.to_string_lossy().into_owned(), keyword: keyword.into() }
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    fn lines(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.line.as_str()).collect()
    }

    #[test]
    fn an_existing_file_starts_at_its_end_and_appended_matching_lines_are_hits() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "old ERROR that happened before the agent started\n");
        let mut t = Tailer::new(vec![rule(&log, "ERROR")], TailLimits::default(), None).unwrap();
        assert!(t.poll().is_empty());
        append(&log, "fine\nERROR one\nstill fine\nanother ERROR two\n");
        let hits = t.poll();
        assert_eq!(lines(&hits), ["ERROR one", "another ERROR two"]);
        assert_eq!(hits[0].file, log);
        assert_eq!(hits[0].rule_index, 0);
        assert_eq!(hits[0].line_no, None, "started at the end: line numbers unknown");
        assert!(t.poll().is_empty(), "nothing is reported twice");
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let mut t = Tailer::new(vec![rule(&log, "ERROR")], TailLimits::default(), None).unwrap();
        t.poll();
        append(&log, "ERR");
        assert!(t.poll().is_empty());
        append(&log, "OR split across writes\r\n");
        assert_eq!(lines(&t.poll()), ["ERROR split across writes"]);
    }

    #[test]
    #[cfg(unix)] // needs file identities (device, inode)
    fn rotation_by_rename_and_create_loses_nothing_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let mut t = Tailer::new(vec![rule(&log, "ERROR")], TailLimits::default(), None).unwrap();
        t.poll();
        append(&log, "ERROR 1\n");
        assert_eq!(lines(&t.poll()), ["ERROR 1"]);
        append(&log, "ERROR 2 before rotation\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&dir.path().join("app.log.1"), "ERROR 3 late write to the old file\n");
        append(&log, "ERROR 4 in the new file\n");
        let hits = t.poll();
        assert_eq!(lines(&hits), ["ERROR 2 before rotation", "ERROR 3 late write to the old file", "ERROR 4 in the new file"]);
        assert_eq!(hits[2].line_no, Some(1), "the new file is read from its beginning");
        append(&dir.path().join("app.log.1"), "ERROR 5 even later\n");
        append(&log, "ERROR 6\n");
        assert_eq!(lines(&t.poll()), ["ERROR 5 even later", "ERROR 6"]);
        assert!(t.poll().is_empty());
        assert!(t.poll().is_empty());
        assert!(t.retired.is_empty(), "the rotated file is closed once it stays quiet");
    }

    #[test]
    #[cfg(unix)] // needs file identities (device, inode)
    fn a_file_renamed_to_another_matched_name_is_followed_not_reread() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("*.log*");
        append(&dir.path().join("app.log"), "ERROR old\n");
        let mut t = Tailer::new(vec![rule(&pattern, "ERROR")], TailLimits::default(), None).unwrap();
        t.poll();
        append(&dir.path().join("app.log"), "ERROR a\n");
        std::fs::rename(dir.path().join("app.log"), dir.path().join("app.log.1")).unwrap();
        append(&dir.path().join("app.log"), "ERROR b\n");
        let hits = t.poll();
        let mut got: Vec<(String, &str)> =
            hits.iter().map(|h| (h.file.file_name().unwrap().to_string_lossy().into_owned(), h.line.as_str())).collect();
        got.sort();
        assert_eq!(got, [("app.log".to_string(), "ERROR b"), ("app.log.1".to_string(), "ERROR a")]);
    }

    #[test]
    fn truncation_starts_again_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "a long line of history that makes the file big\n");
        let mut t = Tailer::new(vec![rule(&log, "ERROR")], TailLimits::default(), None).unwrap();
        t.poll();
        std::fs::write(&log, "ERROR after truncate\n").unwrap();
        let hits = t.poll();
        assert_eq!(lines(&hits), ["ERROR after truncate"]);
        assert_eq!(hits[0].line_no, Some(1));
    }

    #[test]
    #[cfg(unix)] // needs file identities (device, inode)
    fn a_restarted_tailer_resumes_from_its_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let state = dir.path().join("state.json");
        append(&log, "history\n");
        let rules = vec![rule(&log, "ERROR")];
        {
            let mut t = Tailer::new(rules.clone(), TailLimits::default(), Some(state.clone())).unwrap();
            t.poll();
            append(&log, "ERROR seen before the restart\n");
            assert_eq!(t.poll().len(), 1);
        }
        append(&log, "ERROR written while the agent was down\n");
        let mut t = Tailer::new(rules.clone(), TailLimits::default(), Some(state.clone())).unwrap();
        assert_eq!(lines(&t.poll()), ["ERROR written while the agent was down"]);
        drop(t);

        // Replaced while the agent was down: the new file is read from its beginning.
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "ERROR in a file the agent never saw\n");
        let mut t = Tailer::new(rules, TailLimits::default(), Some(state)).unwrap();
        assert_eq!(lines(&t.poll()), ["ERROR in a file the agent never saw"]);
    }

    #[test]
    fn a_glob_follows_two_files_and_files_created_later_from_their_start() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a.log"), dir.path().join("b.log"), dir.path().join("c.log"));
        append(&a, "ERROR old a\n");
        append(&b, "ERROR old b\n");
        append(&dir.path().join("ignored.txt"), "");
        let mut t = Tailer::new(vec![rule(&dir.path().join("*.log"), "ERROR"), rule(&b, "WARN")], TailLimits::default(), None).unwrap();
        assert!(t.poll().is_empty());
        append(&a, "ERROR in a\n");
        append(&b, "ERROR and WARN in b\n");
        append(&c, "ERROR in a new file\n");
        append(&dir.path().join("ignored.txt"), "ERROR not matched\n");
        let mut hits: Vec<(PathBuf, usize, String)> = t.poll().into_iter().map(|h| (h.file, h.rule_index, h.line)).collect();
        hits.sort();
        assert_eq!(
            hits,
            [
                (a, 0, "ERROR in a".to_string()),
                (b.clone(), 0, "ERROR and WARN in b".to_string()),
                (b, 1, "ERROR and WARN in b".to_string()),
                (c, 0, "ERROR in a new file".to_string()),
            ]
        );
    }

    #[test]
    fn polls_are_bounded_and_long_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let limits = TailLimits { max_bytes_per_poll: 1 << 20, max_lines_per_poll: 3, max_line_bytes: 16 };
        let mut t = Tailer::new(vec![rule(&log, "E")], limits, None).unwrap();
        t.poll();
        append(&log, "E1\nE2\nE3\nE4\nE5\n");
        assert_eq!(lines(&t.poll()), ["E1", "E2", "E3"]);
        assert_eq!(lines(&t.poll()), ["E4", "E5"]);
        append(&log, &format!("E{}\nE after\n", "x".repeat(100)));
        assert_eq!(lines(&t.poll()), ["Exxxxxxxxxxxxxxx", "E after"]);
        // A long line still being written is cut once, and its tail is not reported.
        append(&log, &format!("E{}", "y".repeat(40)));
        assert_eq!(lines(&t.poll()), ["Eyyyyyyyyyyyyyyy"]);
        append(&log, "yyy E-looking tail\nE next\n");
        assert_eq!(lines(&t.poll()), ["E next"]);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(matches!(
            Tailer::new(vec![TailRule { pattern: "/var/log/[.log".into(), keyword: "x".into() }], TailLimits::default(), None),
            Err(TailError::Pattern { index: 0, .. })
        ));
        assert!(matches!(
            Tailer::new(vec![TailRule { pattern: "/var/log/a.log".into(), keyword: String::new() }], TailLimits::default(), None),
            Err(TailError::EmptyKeyword { index: 0 })
        ));
    }
}
