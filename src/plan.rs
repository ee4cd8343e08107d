//! `plan`: what a change to the tree does, object by object, grouped by project; with
//! [`against`] a running serve, also the firing alerts it would drop.

pub mod against;

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::diff::{Change, Entry};
use against::DroppedAlert;

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

/// The plan for people. `dropped` (with `--against` only) adds the firing alerts section.
pub fn human(entries: &[Entry], dropped: Option<&[DroppedAlert]>) -> String {
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
    if let Some(dropped) = dropped {
        out.push_str("\nFiring alerts this change would drop:");
        if dropped.is_empty() {
            out.push_str(" none.\n");
        } else {
            out.push('\n');
        }
        for d in dropped {
            let a = &d.alert;
            let since = a.started_at.clone().unwrap_or_else(|| format!("{} ms", a.started_at_ms));
            let server = a.server.as_deref().map(|s| format!(", server {s}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  ! #{} {} {} {} (project {}{server}), firing since {since} → resolved: {}",
                a.id, a.severity, a.rule, a.subject, a.project, d.reason
            );
            let _ = writeln!(out, "      {}", a.message);
        }
    }
    out
}

/// The plan as JSON; `dropped` (with `--against` only) adds `dropped_alerts`.
pub fn json(entries: &[Entry], dropped: Option<&[DroppedAlert]>) -> String {
    let (added, changed, removed) = totals(entries);
    let mut doc = serde_json::json!({ "added": added, "changed": changed, "removed": removed, "changes": entries });
    if let Some(dropped) = dropped {
        doc["dropped_alerts"] = serde_json::to_value(dropped).unwrap_or_default();
    }
    format!("{}\n", serde_json::to_string_pretty(&doc).unwrap_or_default())
}
