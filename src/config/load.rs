//! Reading a tree: walk a directory (or a git revision), split multi-document files and
//! deserialize each document into its raw kind, turning every failure into a diagnostic.
//!
//! Each document is deserialized on its own, so one broken document does not hide problems
//! in the others. Positions inside a document are relative to it; [`Doc::at`] makes them
//! absolute.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::diagnostic::{Diagnostic, Diagnostics, FileId, Location, SourceFile, Sources};
use super::raw::{self, Sp};
use super::suggest::did_you_mean;

/// Files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Every document kind, in the order the README lists them.
pub const KINDS: &[&str] = &[
    "User",
    "Group",
    "Project",
    "Server",
    "PortMonitor",
    "DownCheck",
    "AlertPolicy",
    "ProcessPolicy",
    "LogPolicy",
    "Channel",
    "Maintenance",
];

/// One parsed document of a known kind.
#[derive(Debug, Clone)]
pub enum RawObject {
    User(raw::User),
    Group(raw::Group),
    Project(raw::Project),
    Server(raw::Server),
    PortMonitor(raw::PortMonitor),
    DownCheck(raw::DownCheck),
    AlertPolicy(raw::AlertPolicy),
    ProcessPolicy(raw::ProcessPolicy),
    LogPolicy(raw::LogPolicy),
    Channel(raw::Channel),
    Maintenance(raw::Maintenance),
}

/// A document and where it came from.
#[derive(Debug, Clone)]
pub struct Doc<T> {
    pub file: FileId,
    /// File line (1-based) of the document's first line.
    pub first_line: u32,
    pub value: T,
}

impl<T> Doc<T> {
    /// The absolute location of a value inside this document.
    pub fn at<U>(&self, sp: &Sp<U>) -> Option<Location> {
        Some(self.loc(sp.line, sp.col))
    }

    pub fn loc(&self, line: u32, col: u32) -> Location {
        Location { file: self.file, line: self.first_line + line.max(1) - 1, col: col.max(1) }
    }

    /// The location of the document itself.
    pub fn start(&self) -> Option<Location> {
        Some(self.loc(1, 1))
    }

    pub fn map<U>(&self, value: U) -> Doc<U> {
        Doc { file: self.file, first_line: self.first_line, value }
    }
}

/// Is this a configuration file lint reads? (`*.test.yaml` files are policy tests.)
pub fn is_config_file(name: &str) -> bool {
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_test_file(name)
}

pub fn is_test_file(name: &str) -> bool {
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// Read every configuration file under `root`, skipping hidden directories and files.
/// Problems (unreadable files, loops, oversize, bad UTF-8) become diagnostics; the file is
/// then skipped but the rest of the tree is still read.
pub fn read_dir(root: &Path, diags: &mut Diagnostics) -> Sources {
    read_matching(root, is_config_file, diags)
}

/// Like [`read_dir`], for the files whose name `accept` takes (policy tests, say).
pub fn read_matching(root: &Path, accept: fn(&str) -> bool, diags: &mut Diagnostics) -> Sources {
    let mut sources = Sources { root: root.to_path_buf(), ..Sources::default() };
    let mut visited = HashSet::new();
    let mut paths = Vec::new();
    walk(root, root, accept, &mut visited, &mut paths, &mut sources, diags);
    paths.sort();
    for (shown, full) in paths {
        match fs::metadata(&full) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                unread(&mut sources, &shown, Some(&meta), "too large");
                let id = sources.add(SourceFile { path: shown, text: String::new() });
                diags.error(
                    "file-too-large",
                    Some(Location { file: id, line: 1, col: 1 }),
                    format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", meta.len()),
                );
            }
            Ok(meta) => match fs::read(&full) {
                Ok(bytes) => {
                    if !add_bytes(&mut sources, shown.clone(), bytes, diags) {
                        unread(&mut sources, &shown, Some(&meta), "not UTF-8");
                    }
                }
                Err(e) => io_error(&mut sources, shown, Some(&meta), &e, diags),
            },
            Err(e) => io_error(&mut sources, shown, None, &e, diags),
        }
    }
    sources.tree_files = sources.files.len();
    sources
}

fn io_error(sources: &mut Sources, shown: PathBuf, meta: Option<&fs::Metadata>, e: &std::io::Error, diags: &mut Diagnostics) {
    unread(sources, &shown, meta, &e.to_string());
    let id = sources.add(SourceFile { path: shown, text: String::new() });
    diags.error("io-error", Some(Location { file: id, line: 1, col: 1 }), format!("cannot read file: {e}"));
}

/// Note what was seen of a file or directory whose text is not read: its size and
/// modification time when it has them, and why it was not read.
fn unread(sources: &mut Sources, shown: &Path, meta: Option<&fs::Metadata>, why: &str) {
    let seen = match meta {
        Some(meta) => format!("{}: {why}", stamp(meta)),
        None => why.to_string(),
    };
    sources.unread.push((shown.to_path_buf(), seen));
}

/// A file's size and modification time.
fn stamp(meta: &fs::Metadata) -> String {
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    format!("{} bytes, modified {}.{:09}", meta.len(), modified.as_secs(), modified.subsec_nanos())
}

/// Every configuration file under `root` that [`read_dir`] would read, with its size and
/// modification time, and what could not be read as it was seen — without reading any text.
/// Equal results a moment apart mean nobody is writing to the tree.
pub fn stamps(root: &Path) -> Vec<(PathBuf, String)> {
    let mut sources = Sources::default();
    let mut paths = Vec::new();
    walk(root, root, is_config_file, &mut HashSet::new(), &mut paths, &mut sources, &mut Diagnostics::default());
    paths.sort();
    let mut out = sources.unread;
    for (shown, full) in paths {
        let seen = fs::metadata(&full).map_or_else(|e| e.to_string(), |meta| stamp(&meta));
        out.push((shown, seen));
    }
    out
}

/// Add a file's bytes, checking they are UTF-8 (a BOM is dropped). Returns whether they were:
/// a file that is not gets an `invalid-utf8` diagnostic and no text.
pub fn add_bytes(sources: &mut Sources, shown: PathBuf, bytes: Vec<u8>, diags: &mut Diagnostics) -> bool {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..3);
            }
            sources.add(SourceFile { path: shown, text });
            true
        }
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let col = String::from_utf8_lossy(&valid[line_start..]).chars().count() as u32 + 1;
            let id = sources.add(SourceFile { path: shown, text: String::new() });
            diags.error("invalid-utf8", Some(Location { file: id, line, col }), "file is not valid UTF-8");
            false
        }
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    accept: fn(&str) -> bool,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<(PathBuf, PathBuf)>,
    sources: &mut Sources,
    diags: &mut Diagnostics,
) {
    let shown = |p: &Path| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf());
    // A directory reached twice (through a symlink) is a loop or an alias: read it once.
    match fs::canonicalize(dir) {
        Ok(canon) => {
            if !visited.insert(canon) {
                unread(sources, &shown(dir), None, "already read through another path");
                let id = sources.add(SourceFile { path: shown(dir), text: String::new() });
                diags.error(
                    "io-error",
                    Some(Location { file: id, line: 1, col: 1 }),
                    "directory was already read through another path (a symlink loop?); skipped",
                );
                return;
            }
        }
        Err(e) => {
            unread(sources, &shown(dir), None, &e.to_string());
            diags.error("io-error", None, format!("cannot read directory {}: {e}", dir.display()));
            return;
        }
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            unread(sources, &shown(dir), fs::metadata(dir).ok().as_ref(), &e.to_string());
            diags.error("io-error", None, format!("cannot read directory {}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks; a dangling or looping link fails here.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(root, &path, accept, visited, out, sources, diags),
            Ok(meta) if accept(name) && !meta.is_file() => {
                // A FIFO or device would block or never end: refuse it rather than read it.
                unread(sources, &shown(&path), Some(&meta), "not a regular file");
                let id = sources.add(SourceFile { path: shown(&path), text: String::new() });
                diags.error("io-error", Some(Location { file: id, line: 1, col: 1 }), "not a regular file; skipped");
            }
            Ok(_) if accept(name) => out.push((shown(&path), path)),
            Ok(_) => {}
            Err(e) if accept(name) || entry.file_type().is_ok_and(|t| t.is_symlink()) => io_error(sources, shown(&path), None, &e, diags),
            Err(_) => {}
        }
    }
}

/// Read the configuration files under `dir` as they are at git revision `rev`
/// of the repository that holds `dir`.
pub fn read_git(dir: &Path, rev: &str, diags: &mut Diagnostics) -> Result<Sources, GitError> {
    let prefix = git(dir, &["rev-parse", "--show-prefix"])?;
    let prefix = prefix.trim().to_string();
    let commit = git(dir, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")])?;
    // At the repository's root the prefix is empty: list the whole tree (git refuses an empty pathspec).
    let mut ls_tree = vec!["ls-tree", "-r", "-z", "--full-tree", commit.trim()];
    let pathspec = format!(":(literal){prefix}");
    if !prefix.is_empty() {
        ls_tree.extend(["--", &pathspec]);
    }
    let listing = git(dir, &ls_tree)?;
    let mut sources = Sources { root: dir.to_path_buf(), ..Sources::default() };
    let mut entries: Vec<(String, String)> = Vec::new();
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        // "<mode> <type> <object>\t<path>"
        let Some((meta, path)) = entry.split_once('\t') else { continue };
        let mut parts = meta.split(' ');
        let (Some(_mode), Some(kind), Some(object)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let rel = path.strip_prefix(&prefix).unwrap_or(path);
        let hidden = rel.split('/').any(|c| c.starts_with('.'));
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if kind == "blob" && !hidden && is_config_file(name) {
            entries.push((rel.to_string(), object.to_string()));
        }
    }
    entries.sort();
    for (rel, object) in entries {
        let size: u64 = git(dir, &["cat-file", "-s", &object])?.trim().parse().unwrap_or(0);
        if size > MAX_FILE_BYTES {
            let id = sources.add(SourceFile { path: rel.into(), text: String::new() });
            diags.error(
                "file-too-large",
                Some(Location { file: id, line: 1, col: 1 }),
                format!("file is {size} bytes; the limit is {MAX_FILE_BYTES}"),
            );
            continue;
        }
        let bytes = git_bytes(dir, &["cat-file", "blob", &object])?;
        add_bytes(&mut sources, rel.into(), bytes, diags);
    }
    Ok(sources)
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

fn git_bytes(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output()?;
    if !out.status.success() {
        return Err(GitError::Failed { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(out.stdout)
}

fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    Ok(String::from_utf8_lossy(&git_bytes(dir, args)?).into_owned())
}

/// Parsed documents by file path and content hash, so that a reload re-parses only the files
/// that changed (serve keeps one across revisions; lint starts empty).
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<PathBuf, CachedFile>,
}

/// One file's documents and diagnostics, with file ids set to `FileId(0)`.
#[derive(Debug, Default)]
struct CachedFile {
    hash: u64,
    docs: Vec<Doc<RawObject>>,
    diags: Vec<Diagnostic>,
}

fn content_hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Split every file into documents and deserialize each into its kind.
pub fn parse(sources: &Sources, diags: &mut Diagnostics) -> Vec<Doc<RawObject>> {
    parse_cached(sources, diags, &mut ParseCache::default())
}

/// [`parse`], reusing what `cache` holds for files whose content is unchanged.
pub fn parse_cached(sources: &Sources, diags: &mut Diagnostics, cache: &mut ParseCache) -> Vec<Doc<RawObject>> {
    let unreadable: HashSet<FileId> = diags.items.iter().filter_map(|d| d.location.map(|l| l.file)).collect();
    let files: Vec<(FileId, &SourceFile, u64)> = sources
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (FileId(i as u32), f))
        .filter(|(id, f)| !(f.text.is_empty() && unreadable.contains(id)))
        .map(|(id, f)| (id, f, content_hash(&f.text)))
        .collect();
    let misses: Vec<(FileId, &SourceFile)> =
        files.iter().filter(|(_, f, hash)| cache.files.get(&f.path).is_none_or(|c| c.hash != *hash)).map(|&(id, f, _)| (id, f)).collect();
    let (parsed_docs, parsed_diags) = parse_parallel(&misses);
    let mut fresh: HashMap<FileId, CachedFile> = HashMap::new();
    for doc in parsed_docs {
        fresh.entry(doc.file).or_default().docs.push(Doc { file: FileId(0), ..doc });
    }
    for mut d in parsed_diags.items {
        let Some(location) = d.location.as_mut() else { continue };
        let id = std::mem::replace(&mut location.file, FileId(0));
        fresh.entry(id).or_default().diags.push(d);
    }
    let mut docs = Vec::new();
    let mut kept = HashMap::new();
    for &(id, file, hash) in &files {
        let entry = fresh
            .remove(&id)
            .map(|e| CachedFile { hash, ..e })
            .or_else(|| cache.files.remove(&file.path))
            .unwrap_or(CachedFile { hash, ..CachedFile::default() });
        docs.extend(entry.docs.iter().map(|d| Doc { file: id, ..d.clone() }));
        diags.items.extend(entry.diags.iter().map(|d| {
            let mut d = d.clone();
            if let Some(l) = d.location.as_mut() {
                l.file = id;
            }
            d
        }));
        kept.insert(file.path.clone(), entry);
    }
    cache.files = kept;
    docs
}

/// Parse files on all cores: large sets are cut into contiguous runs of about equal size,
/// one per core, and joined in file order, so the output is the same as on one thread.
fn parse_parallel(files: &[(FileId, &SourceFile)]) -> (Vec<Doc<RawObject>>, Diagnostics) {
    let total: usize = files.iter().map(|(_, f)| f.text.len()).sum();
    let threads = if total < PARALLEL_PARSE_BYTES { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) };
    let mut runs: Vec<&[(FileId, &SourceFile)]> = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, f)) in files.iter().enumerate() {
        bytes += f.text.len();
        if bytes * threads >= total * (runs.len() + 1) && runs.len() + 1 < threads {
            runs.push(&files[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&files[start..]);
    if runs.len() == 1 {
        return parse_files(runs[0]);
    }
    let results: Vec<(Vec<Doc<RawObject>>, Diagnostics)> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs.iter().map(|run| scope.spawn(|| parse_files(run))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut docs = Vec::new();
    let mut diags = Diagnostics::default();
    for (run_docs, run_diags) in results {
        docs.extend(run_docs);
        diags.items.extend(run_diags.items);
    }
    (docs, diags)
}

/// Below this many bytes of YAML, one thread parses everything.
const PARALLEL_PARSE_BYTES: usize = 256 * 1024;

fn parse_files(files: &[(FileId, &SourceFile)]) -> (Vec<Doc<RawObject>>, Diagnostics) {
    let mut docs = Vec::new();
    let mut diags = Diagnostics::default();
    for &(id, file) in files {
        let (docs_before, diags_before) = (docs.len(), diags.items.len());
        for (first_line, text) in split_documents(&file.text) {
            let doc = Doc { file: id, first_line, value: () };
            if let Some(obj) = parse_document(&doc, text, &mut diags) {
                docs.push(doc.map(obj));
            }
        }
        if docs.len() == docs_before && diags.items.len() == diags_before {
            diags.warning("empty-file", Some(Location { file: id, line: 1, col: 1 }), "file holds no YAML documents");
        }
    }
    (docs, diags)
}

/// Split a YAML stream at its document markers. A `---` or `...` at column 0 is always a
/// marker in YAML (never content), so splitting by lines is exact. Documents holding only
/// comments and blank lines are dropped. Yields (first line, text), each text starting at its
/// document's first line of content.
pub fn split_documents(text: &str) -> Vec<(u32, &str)> {
    let is_marker = |line: &str, m: &str| line.strip_prefix(m).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']));
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u32;
    let mut offset = 0usize;
    // A document starts at its first line of content, not at its `---` or a leading comment,
    // so that diagnostics about the document itself (no `kind`) point at the document.
    fn push<'t>(text: &'t str, mut from: usize, to: usize, mut first: u32, out: &mut Vec<(u32, &'t str)>) {
        for line in text[from..to].split_inclusive('\n') {
            let t = line.trim();
            let bare_marker = t.strip_prefix("---").map(str::trim_start).is_some_and(|rest| rest.is_empty() || rest.starts_with('#'));
            if !(t.is_empty() || t.starts_with('#') || bare_marker) {
                out.push((first, &text[from..to]));
                return;
            }
            from += line.len();
            first += 1;
        }
    }
    for (line_no, line) in (1u32..).zip(text.split_inclusive('\n')) {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") {
            push(text, start, offset, start_line, &mut out);
            start = offset;
            start_line = line_no;
        } else if is_marker(bare, "...") {
            push(text, start, offset, start_line, &mut out);
            start = offset + line.len();
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    push(text, start, text.len(), start_line, &mut out);
    out
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 1_000_000,
        },
    }
}

/// Only `kind`; every other field is skipped (serde ignores unknown fields unless denied).
#[derive(Deserialize)]
struct KindProbe {
    kind: Option<Sp<String>>,
}

/// Find `kind:` cheaply in block-style documents; fall back to a full parse otherwise.
fn find_kind(text: &str) -> Option<(String, u32, u32)> {
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("kind:") {
            let value = rest.split('#').next().unwrap_or("").trim();
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            let col = (line.len() - rest.len() + rest.find(|c: char| !c.is_whitespace()).unwrap_or(0)) as u32 + 1;
            return Some((value.to_string(), i as u32 + 1, col));
        }
    }
    None
}

fn parse_document(doc: &Doc<()>, text: &str, diags: &mut Diagnostics) -> Option<RawObject> {
    let (kind, line, col) = match find_kind(text) {
        Some(found) => found,
        None => match deserialize::<KindProbe>(doc, text, diags)? {
            KindProbe { kind: Some(k), .. } => (k.value, k.line, k.col),
            KindProbe { kind: None, .. } => {
                diags.error("missing-kind", doc.start(), "document has no `kind`").with_hint(format!("add one of: {}", KINDS.join(", ")));
                return None;
            }
        },
    };
    match kind.as_str() {
        "User" => deserialize(doc, text, diags).map(RawObject::User),
        "Group" => deserialize(doc, text, diags).map(RawObject::Group),
        "Project" => deserialize(doc, text, diags).map(RawObject::Project),
        "Server" => deserialize(doc, text, diags).map(RawObject::Server),
        "PortMonitor" => deserialize(doc, text, diags).map(RawObject::PortMonitor),
        "DownCheck" => deserialize(doc, text, diags).map(RawObject::DownCheck),
        "AlertPolicy" => deserialize(doc, text, diags).map(RawObject::AlertPolicy),
        "ProcessPolicy" => deserialize(doc, text, diags).map(RawObject::ProcessPolicy),
        "LogPolicy" => deserialize(doc, text, diags).map(RawObject::LogPolicy),
        "Channel" => deserialize(doc, text, diags).map(RawObject::Channel),
        "Maintenance" => deserialize(doc, text, diags).map(RawObject::Maintenance),
        other => {
            diags
                .error("unknown-kind", Some(doc.loc(line, col)), format!("unknown kind `{other}`"))
                .with_hint(did_you_mean(other, KINDS.iter().copied()).unwrap_or_else(|| format!("expected one of: {}", KINDS.join(", "))));
            None
        }
    }
}

/// Deserialize one YAML document with lint's budgets against hostile input; a failure becomes
/// a diagnostic with its rule id and position, as lint reports it. Policy test files are read
/// with it too.
pub fn deserialize<T: for<'de> Deserialize<'de>>(doc: &Doc<()>, text: &str, diags: &mut Diagnostics) -> Option<T> {
    match serde_saphyr::from_str_with_options(text, options()) {
        Ok(value) => Some(value),
        Err(e) => {
            report_yaml_error(doc, text, &e, diags);
            None
        }
    }
}

/// Turn a serde-saphyr error into a diagnostic with a rule id and an absolute position.
fn report_yaml_error(doc: &Doc<()>, text: &str, error: &serde_saphyr::Error, diags: &mut Diagnostics) {
    use serde_saphyr::Error as E;
    let error = match error.without_snippet() {
        E::AliasError { error, .. } => error.without_snippet(),
        other => other,
    };
    let location = error.location().map(|l| doc.loc(l.line() as u32, l.column() as u32)).or(doc.start());
    let rendered = error.render_with_formatter(&serde_saphyr::UserMessageFormatter);
    let message = match rendered.rfind(" at line ") {
        Some(cut) => rendered[..cut].to_string(),
        None => rendered,
    };
    match error {
        E::SerdeUnknownField { field, expected, .. } => {
            let hint = did_you_mean(field, expected.iter().copied()).unwrap_or_else(|| format!("fields here: {}", expected.join(", ")));
            diags.error("unknown-field", location, format!("unknown field `{field}`")).with_hint(hint);
        }
        E::SerdeMissingField { field, .. } => {
            // serde-saphyr places a missing field at the mapping's last key; point at the mapping.
            let location = error.location().map(|l| {
                let (line, col) = mapping_start(text, l.line() as u32, l.column() as u32);
                doc.loc(line, col)
            });
            diags.error("missing-field", location.or(doc.start()), format!("missing required field `{field}`"));
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().unwrap_or("?");
            diags.error("duplicate-key", location, format!("key `{key}` appears twice in this mapping"));
        }
        E::SerdeUnknownVariant { variant, expected, .. } => {
            let hint =
                did_you_mean(variant, expected.iter().copied()).unwrap_or_else(|| format!("expected one of: {}", expected.join(", ")));
            diags.error("bad-value", location, format!("unknown value `{variant}`")).with_hint(hint);
        }
        E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::SerdeInvalidLength { .. }
        | E::InvalidScalar { .. }
        | E::Unexpected { .. }
        | E::InvalidBooleanStrict { .. }
        | E::NullIntoString { .. }
        | E::Message { .. } => {
            diags.error("wrong-type", location, message);
        }
        E::Budget { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            diags.error("yaml-limit", location, format!("YAML refused: {message}"));
        }
        // The parser's own nesting limit, hit before the depth budget on deeply nested flow collections.
        E::ExternalMessage { source, .. }
            if matches!(&**source, serde_saphyr::ExternalMessageSource::Parser(e)
                if matches!(e.kind(), serde_saphyr::granit_parser::ErrorKind::RecursionLimitExceeded)) =>
        {
            diags.error("yaml-limit", location, format!("YAML refused: nesting too deep ({message})"));
        }
        _ => {
            diags.error("yaml-syntax", location, message);
        }
    }
}

/// The first key of the mapping that holds the key at (`line`, `col`) (1-based, in
/// characters): the `{` of a flow mapping on that line, else the topmost key of the block
/// mapping at that indentation. Falls back to (`line`, `col`) when the shape is unclear.
fn mapping_start(text: &str, line: u32, col: u32) -> (u32, u32) {
    if line == 0 || col == 0 {
        return (line, col);
    }
    let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    let (row, key) = (line as usize - 1, col as usize - 1);
    let Some(this) = lines.get(row).filter(|l| key <= l.len()) else { return (line, col) };
    if this[..key].iter().rev().find(|c| !c.is_whitespace()).is_some_and(|c| matches!(c, '{' | ',')) {
        // A flow mapping: its unclosed `{` before the key, if it opens on this line.
        let mut depth = 0;
        for i in (0..key).rev() {
            match this[i] {
                '}' | ']' => depth += 1,
                '{' if depth == 0 => return (line, i as u32 + 1),
                '{' | '[' => depth -= 1,
                _ => {}
            }
        }
        return (line, col);
    }
    let mut first = (line, col);
    for i in (0..=row).rev() {
        let l = &lines[i];
        let Some(indent) = l.iter().position(|c| !c.is_whitespace()) else { continue };
        if l[indent] == '#' || indent > key {
            continue;
        }
        if indent == key {
            first = (i as u32 + 1, col);
            continue;
        }
        // `- key:` opens a mapping inside a block sequence item.
        if l[indent] == '-' && key > indent + 1 && l[indent + 1..key].iter().all(|c| c.is_whitespace()) {
            first = (i as u32 + 1, col);
        }
        break;
    }
    first
}
