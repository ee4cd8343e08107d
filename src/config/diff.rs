//! Keyed diff between two models: objects added, removed, and changed field by field.
//! Identity is (project, kind, name); `plan` prints it and serve will apply it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::model::Config;

/// The identity of an object across revisions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectKey {
    /// `None` for objects outside any project (users, groups, channels, shared policies).
    pub project: Option<String>,
    pub kind: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed { fields: Vec<FieldChange> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub key: ObjectKey,
    #[serde(flatten)]
    pub change: Change,
}

/// Every object of a model as JSON, by identity.
pub fn objects(config: &Config) -> BTreeMap<ObjectKey, Value> {
    let mut out = BTreeMap::new();
    let mut put = |project: Option<&str>, kind: &'static str, name: &str, value: Value| {
        out.insert(ObjectKey { project: project.map(str::to_string), kind, name: name.to_string() }, value);
    };
    for (k, v) in &config.users {
        put(None, "User", k, json(v));
    }
    for (k, v) in &config.groups {
        put(None, "Group", k, json(v));
    }
    for (k, v) in &config.channels {
        put(None, "Channel", k, json(v));
    }
    for (k, v) in &config.shared_policies {
        put(None, "AlertPolicy", k, json(v));
    }
    for (p, project) in &config.projects {
        let p = Some(p.as_str());
        put(p, "Project", &project.name, json(project));
        for (k, v) in &project.servers {
            put(p, "Server", k, json(v));
        }
        for (k, v) in &project.port_monitors {
            put(p, "PortMonitor", k, json(v));
        }
        for (k, v) in &project.down_checks {
            put(p, "DownCheck", k, json(v));
        }
        for (k, v) in &project.alert_policies {
            put(p, "AlertPolicy", k, json(v));
        }
        for (k, v) in &project.process_policies {
            put(p, "ProcessPolicy", k, json(v));
        }
        for (k, v) in &project.log_policies {
            put(p, "LogPolicy", k, json(v));
        }
        for (k, v) in &project.maintenance {
            put(p, "Maintenance", k, json(v));
        }
    }
    out
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What changes from `old` to `new`, in identity order (so grouped by project).
pub fn diff(old: &Config, new: &Config) -> Vec<Entry> {
    let (before, after) = (objects(old), objects(new));
    let mut out = Vec::new();
    for (key, old_value) in &before {
        match after.get(key) {
            None => out.push(Entry { key: key.clone(), change: Change::Removed }),
            Some(new_value) if new_value != old_value => {
                out.push(Entry { key: key.clone(), change: Change::Changed { fields: field_changes(old_value, new_value) } });
            }
            Some(_) => {}
        }
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        out.push(Entry { key: key.clone(), change: Change::Added });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn field_changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|f| {
            let (old, new) = (b.get(f).cloned().unwrap_or(Value::Null), a.get(f).cloned().unwrap_or(Value::Null));
            (old != new).then(|| FieldChange { field: f.clone(), before: old, after: new })
        })
        .collect()
}
