//! The assigned log rules: a [`Tailer`] built from what the collector assigned, rebuilt (with
//! the same state file, so offsets are kept) when the rules change, and polled on a blocking
//! thread; its hits in wire form.

use std::path::PathBuf;

use tokio::task::{JoinError, JoinHandle};

use crate::agent::tail::{Hit, TailError, TailLimits, TailRule, Tailer};
use crate::errors::error_chain;
use crate::protocol::{LogAssignment, LogHit};

/// The tailer for the assigned log rules: rebuilt, with the same state file (so offsets are
/// kept), when the rules change; polled on a blocking thread.
pub(super) struct Tail {
    state_file: Option<PathBuf>,
    /// What the collector assigned last.
    wanted: Vec<LogAssignment>,
    /// What the tailer was built from.
    built_from: Vec<LogAssignment>,
    /// The valid rules of `built_from`, in the tailer's rule order (a hit's `rule_index`).
    rules: Vec<LogAssignment>,
    /// None without rules, and while a poll has it.
    tailer: Option<Tailer>,
    polling: bool,
}

impl Tail {
    pub(super) fn new(state_file: Option<PathBuf>) -> Tail {
        Tail { state_file, wanted: Vec::new(), built_from: Vec::new(), rules: Vec::new(), tailer: None, polling: false }
    }

    pub(super) fn assign(&mut self, rules: Vec<LogAssignment>) {
        self.wanted = rules;
        self.rebuild();
    }

    /// Build the tailer again if the wanted rules changed (after the poll in flight, if any).
    fn rebuild(&mut self) {
        if self.polling || self.wanted == self.built_from {
            return;
        }
        self.tailer = None; // its place was saved by its last poll
        self.built_from = self.wanted.clone();
        let (rules, tailer) = build_tailer(self.wanted.clone(), self.state_file.clone());
        if !self.wanted.is_empty() {
            tracing::info!(rules = rules.len(), "following the assigned log rules");
        }
        self.rules = rules;
        self.tailer = tailer;
    }

    /// Hand the tailer to a blocking thread for one poll.
    pub(super) fn start_poll(&mut self) -> Option<JoinHandle<(Tailer, Vec<Hit>)>> {
        let mut tailer = self.tailer.take()?;
        self.polling = true;
        Some(tokio::task::spawn_blocking(move || {
            let hits = tailer.poll();
            (tailer, hits)
        }))
    }

    /// Take the tailer back; its hits, in wire form (mapped before any rebuild changes the rules).
    /// A poll that panicked loses the tailer: it is rebuilt.
    pub(super) fn polled(&mut self, polled: Result<(Tailer, Vec<Hit>), JoinError>, at_ms: i64) -> Vec<LogHit> {
        self.polling = false;
        let hits = match polled {
            Ok((tailer, hits)) => {
                self.tailer = Some(tailer);
                hits.into_iter().filter_map(|hit| self.log_hit(hit, at_ms)).collect()
            }
            Err(error) => {
                tracing::error!(%error, "the log tailer failed; starting it again");
                self.built_from.clear();
                Vec::new()
            }
        };
        self.rebuild();
        hits
    }

    /// The wire form of a hit of the current rules.
    fn log_hit(&self, hit: Hit, at_ms: i64) -> Option<LogHit> {
        let rule = self.rules.get(hit.rule_index)?;
        Some(LogHit { policy: rule.policy.clone(), rule: rule.rule, file: hit.file.to_string_lossy().into_owned(), line: hit.line, at_ms })
    }
}

/// A tailer for the valid ones of `rules` (an invalid glob or an empty keyword is logged and
/// skipped), and those rules. A state file that cannot be used is logged; a corrupt one is
/// replaced, an unreadable one is not used.
fn build_tailer(mut rules: Vec<LogAssignment>, mut state_file: Option<PathBuf>) -> (Vec<LogAssignment>, Option<Tailer>) {
    loop {
        if rules.is_empty() {
            return (rules, None);
        }
        let tail_rules = rules.iter().map(|r| TailRule { pattern: r.file.clone(), keyword: r.keyword.clone() }).collect();
        match Tailer::new(tail_rules, TailLimits::default(), state_file.clone()) {
            Ok(tailer) => return (rules, Some(tailer)),
            Err(error @ (TailError::Pattern { index, .. } | TailError::EmptyKeyword { index })) => {
                let rule = rules.remove(index);
                tracing::warn!(policy = %rule.policy, rule = rule.rule, file = %rule.file, error = %error_chain(&error), "skipping an invalid log rule");
            }
            Err(error) => {
                let replaced = matches!(error, TailError::ParseState { .. })
                    && state_file.as_ref().is_some_and(|path| std::fs::remove_file(path).is_ok());
                tracing::warn!(
                    error = %error_chain(&error),
                    "cannot use the tail state file; lines appended while the agent was down may be missed"
                );
                if !replaced {
                    state_file = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(policy: &str, rule: usize, file: &str, keyword: &str) -> LogAssignment {
        LogAssignment { policy: policy.into(), rule, file: file.into(), keyword: keyword.into() }
    }

    #[test]
    fn invalid_log_rules_are_skipped_and_hits_name_their_policy_rule() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "").unwrap();
        let log = log.display().to_string();
        let rules = vec![rule("a", 0, "/tmp/[", "x"), rule("a", 1, &log, ""), rule("b", 3, &log, "ERROR")];
        let mut tail = Tail::new(Some(dir.path().join("state")));
        tail.assign(rules.clone());
        assert_eq!(tail.rules, [rules[2].clone()]);
        let mut handle = tail.tailer.take().expect("a tailer for the valid rule");
        assert!(handle.poll().is_empty());
        std::fs::write(&log, "fine\nERROR here\n").unwrap();
        let hits = handle.poll();
        let hit = tail.log_hit(hits.into_iter().next().expect("one hit"), 42).unwrap();
        assert_eq!(hit, LogHit { policy: "b".into(), rule: 3, file: log.clone(), line: "ERROR here".into(), at_ms: 42 });
        assert!(dir.path().join("state").exists());
    }

    #[test]
    fn a_corrupt_state_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(&state, "{not json").unwrap();
        let (rules, tailer) = build_tailer(vec![rule("a", 0, "/nonexistent/x.log", "k")], Some(state.clone()));
        assert_eq!(rules.len(), 1);
        tailer.expect("a tailer").poll();
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(text.contains("\"version\""), "the state file was written again: {text}");
    }

    #[test]
    fn the_tailer_is_rebuilt_only_when_the_rules_change() {
        let mut tail = Tail::new(None);
        tail.assign(vec![rule("a", 0, "/nonexistent/x.log", "k")]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _runtime = rt.enter();
        let handle = tail.start_poll().expect("polling");
        assert!(tail.tailer.is_none() && tail.polling);
        tail.assign(vec![rule("a", 0, "/nonexistent/y.log", "k")]);
        assert_eq!(tail.built_from[0].file, "/nonexistent/x.log", "not rebuilt during a poll");
        let polled = rt.block_on(handle);
        tail.polled(polled, 0);
        assert_eq!(tail.built_from[0].file, "/nonexistent/y.log", "rebuilt once the poll is back");
        assert!(tail.tailer.is_some());
        tail.assign(Vec::new());
        assert!(tail.tailer.is_none() && tail.rules.is_empty());
    }
}
