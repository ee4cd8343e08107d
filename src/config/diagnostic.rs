//! Diagnostics: what lint and serve report about a tree — severity, rule id, place, message, hint.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// Index of a file in a [`Sources`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A place in a source file (1-based line and column, in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub level: Level,
    /// Stable rule id, e.g. `unknown-reference`; see [`RULES`].
    pub rule: &'static str,
    /// `None` for problems with no file (an unreadable directory).
    pub location: Option<Location>,
    pub message: String,
    pub hint: Option<String>,
}

/// One file of a configuration tree, as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as shown to users: relative to the tree's root where possible.
    pub path: PathBuf,
    /// Empty when the file could not be read as text.
    pub text: String,
}

/// The files of one tree; diagnostics point into it by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    /// The tree's directory as the user named it; diagnostics show tree files under it, so
    /// paths are relative to where lint ran (what editors and GitHub annotations expect).
    pub root: PathBuf,
    /// How many of `files` belong to the tree; the policy library's follow.
    pub tree_files: usize,
    /// What was seen of each file or directory of the tree that could not be read — its path
    /// with its size and modification time, or the error — so that a tree's content hash
    /// changes whenever one of them does, though their text was never read.
    pub unread: Vec<(PathBuf, String)>,
}

impl Sources {
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(self.files.len() as u32 - 1)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// A file's path as shown in diagnostics.
    pub fn display(&self, id: FileId) -> String {
        let path = &self.get(id).path;
        if (id.0 as usize) < self.tree_files && !self.root.as_os_str().is_empty() && self.root != Path::new(".") {
            self.root.join(path).display().to_string()
        } else {
            path.display().to_string()
        }
    }
}

/// Collects diagnostics while a tree is read and compiled.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, rule: &'static str, location: Option<Location>, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Level::Error, rule, location, message.into())
    }

    pub fn warning(&mut self, rule: &'static str, location: Option<Location>, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Level::Warning, rule, location, message.into())
    }

    fn push(&mut self, level: Level, rule: &'static str, location: Option<Location>, message: String) -> &mut Diagnostic {
        debug_assert!(RULES.iter().any(|r| r.id == rule), "rule {rule} is not listed in RULES");
        self.items.push(Diagnostic { level, rule, location, message, hint: None });
        self.items.last_mut().expect("just pushed")
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.level == Level::Error)
    }

    /// Sorted by file, line and column, then rule; the order every output format uses.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| (a.location, a.rule, &a.message).cmp(&(b.location, b.rule, &b.message)));
        self.items
    }
}

impl Diagnostic {
    pub fn with_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(&mut self, hint: Option<String>) -> &mut Self {
        self.hint = hint;
        self
    }
}

/// A lint rule: its stable id, default level and what it checks.
pub struct Rule {
    pub id: &'static str,
    pub level: Level,
    pub summary: &'static str,
}

const fn rule(id: &'static str, level: Level, summary: &'static str) -> Rule {
    Rule { id, level, summary }
}

/// Every rule lint enforces. Ids are stable: CI configurations and tests depend on them.
pub const RULES: &[Rule] = &[
    rule("io-error", Level::Error, "a file or directory could not be read (permissions, a symlink loop)"),
    rule("file-too-large", Level::Error, "a file is larger than the 8 MiB limit"),
    rule("invalid-utf8", Level::Error, "a file is not valid UTF-8"),
    rule("empty-file", Level::Warning, "a YAML file holds no documents"),
    rule("empty-tree", Level::Error, "the directory holds no configuration documents at all"),
    rule("yaml-syntax", Level::Error, "the YAML cannot be parsed"),
    rule("yaml-limit", Level::Error, "the YAML exceeds a resource budget (an alias bomb, nesting too deep)"),
    rule("missing-kind", Level::Error, "a document has no `kind`"),
    rule("unknown-kind", Level::Error, "a document's `kind` is not one watchkeeper knows"),
    rule("unknown-field", Level::Error, "a field the kind does not have"),
    rule("missing-field", Level::Error, "a required field is absent"),
    rule("duplicate-key", Level::Error, "a mapping has the same key twice"),
    rule("wrong-type", Level::Error, "a value has the wrong YAML type"),
    rule("bad-value", Level::Error, "a value is not one of the allowed words"),
    rule("bad-slug", Level::Error, "a name is not a slug ([a-z0-9][a-z0-9-]*, at most 63)"),
    rule("bad-duration", Level::Error, "a duration is not like 500ms, 30s, 5m, 1h, 1d"),
    rule("bad-email", Level::Error, "an e-mail address is not valid"),
    rule("bad-phone", Level::Error, "a phone number is not E.164 once separators are removed"),
    rule("unknown-timezone", Level::Error, "a timezone is not an IANA name"),
    rule("port-range", Level::Error, "a port is outside 1-65535"),
    rule("bad-address", Level::Error, "an IP address, CIDR range or host name is malformed"),
    rule("bad-hash", Level::Error, "a *_sha256 value is not 64 hex digits"),
    rule("bad-time", Level::Error, "a time, time range or timestamp is malformed or out of order"),
    rule("bad-url", Level::Error, "a URL is not http(s)"),
    rule("bad-ca-file", Level::Error, "a channel's smtp.ca_file cannot be read or holds no usable CA certificate"),
    rule("bad-maildir", Level::Error, "a channel's `bounces` is not an absolute path"),
    rule("bad-json-path", Level::Error, "a JSON path is not `$.key` or `$.key.key…`"),
    rule("bad-regex", Level::Error, "a process regex does not compile"),
    rule("bad-count", Level::Error, "a count is out of range (failures/recoveries >= 1, min <= max)"),
    rule("port-count", Level::Error, "a port monitor lists no ports, more than 16, or one twice"),
    rule("exclusive-fields", Level::Error, "fields that must be given one way are given both or neither"),
    rule("duplicate-name", Level::Error, "two objects have the same identity"),
    rule("unknown-reference", Level::Error, "a name refers to nothing"),
    rule("role-conflict", Level::Error, "a user holds two roles in one group or project"),
    rule("project-admin", Level::Error, "a project with no group lists no admin member"),
    rule("project-networks", Level::Error, "a project in a group declares its own networks"),
    rule("downcheck-self", Level::Error, "a down-check's detector is its target"),
    rule("downcheck-paused", Level::Error, "a down-check's detector is paused"),
    rule("dependency-cycle", Level::Error, "servers' depends_on form a cycle"),
    rule("threshold-order", Level::Error, "warning and fatal thresholds are missing or in the wrong order"),
    rule("timeout-interval", Level::Error, "a timeout is not shorter than its interval"),
    rule("unknown-metric", Level::Error, "a metric name watchkeeper does not collect"),
    rule("windows-only", Level::Error, "an event_log rule applies to a server that is not os: windows"),
    rule("unapproved-network", Level::Error, "a monitored address is outside the approved networks"),
    rule("channel-incomplete", Level::Error, "a channel lacks what its type needs"),
    rule("escalation-order", Level::Error, "an escalation step does not come later than the step before it"),
    rule("escalation-empty", Level::Error, "an escalation step notifies nobody"),
    rule("escalation-medium", Level::Error, "an escalation step sends through a medium the project has no channel of, or a webhook"),
    rule("sms-no-phone", Level::Warning, "a user who should get SMS has no phone"),
    rule("no-policy", Level::Warning, "a server has no alert policy"),
    rule("no-channel", Level::Warning, "a project has no channel"),
    rule("unused-policy", Level::Warning, "a policy nothing uses"),
    rule("inline-secret", Level::Warning, "a value looks like a secret written inline instead of ${ENV}"),
    rule("maintenance-past", Level::Warning, "a maintenance window has already ended"),
    rule(
        "bad-test",
        Level::Error,
        "a policy test (`watchkeeper test`) cannot run: an unknown target, a bad series, a rule it cannot raise",
    ),
];
