//! `plan`: what a change to the tree does, object by object, grouped by project.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::diff::{Change, Entry};

/// Counts of added, changed and removed objects.
pub fn totals(entries: &[Entry]) -> (usize, usize, usize) {
    let count = |f: fn(&Change) -> bool| entries.iter().filter(|e| f(&e.change)).count();
    (count(|c| matches!(c, Change::Added)), count(|c| matches!(c, Change::Changed { .. })), count(|c| matches!(c, Change::Removed)))
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

pub fn human(entries: &[Entry]) -> String {
    let (added, changed, removed) = totals(entries);
    let mut out = format!("Plan: {added} to add, {changed} to change, {removed} to remove.\n");
    let mut current: Option<&Option<String>> = None;
    for e in entries {
        if current != Some(&e.key.project) {
            current = Some(&e.key.project);
            match &e.key.project {
                Some(p) => {
                    let _ = write!(out, "\nproject {p}\n");
                }
                None => out.push_str("\nshared (users, groups, channels, shared policies)\n"),
            }
        }
        let sign = match e.change {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed { .. } => '~',
        };
        let _ = writeln!(out, "  {sign} {} {}", e.key.kind, e.key.name);
        if let Change::Changed { fields } = &e.change {
            for f in fields {
                let _ = writeln!(out, "      {}: {} → {}", f.field, show(&f.before), show(&f.after));
            }
        }
    }
    if entries.is_empty() {
        out.push_str("\nNo changes.\n");
    }
    out
}

pub fn json(entries: &[Entry]) -> String {
    let (added, changed, removed) = totals(entries);
    let doc = serde_json::json!({ "added": added, "changed": changed, "removed": removed, "changes": entries });
    format!("{}\n", serde_json::to_string_pretty(&doc).unwrap_or_default())
}
