//! Keyed diff between two models: objects added, removed, and changed field by field.
//! Identity is (project, kind, name); `plan` prints it and serve will apply it.
//!
//! The diff works on object maps ([`objects`]), so `plan --base` (two local trees) and
//! `plan --against` (the objects a running serve reports, and a local tree) share one piece of code.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::Config;

/// The identity of an object across revisions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// `None` for objects outside any project (users, groups, channels, shared policies).
    pub project: Option<String>,
    /// `User`, `Group`, `Channel`, `Project`, `Server`, `PortMonitor`, … as written in YAML.
    pub kind: String,
    pub name: String,
}

/// One object with its identity, as `GET /api/v1/objects` sends it: `{project, kind, name, value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    #[serde(flatten)]
    pub key: ObjectKey,
    /// Exactly what [`objects`] produces for it.
    pub value: Value,
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
    each_object(config, |key, value| {
        out.insert(key, value());
    });
    out
}

/// The identity of every object of a model (what [`objects`] holds, without the JSON).
pub fn object_keys(config: &Config) -> BTreeSet<ObjectKey> {
    let mut out = BTreeSet::new();
    each_object(config, |key, _| {
        out.insert(key);
    });
    out
}

/// Call `visit` with every object's identity and a way to get its JSON.
fn each_object(config: &Config, mut visit: impl FnMut(ObjectKey, &dyn Fn() -> Value)) {
    let mut put = |project: Option<&str>, kind: &'static str, name: &str, value: &dyn Fn() -> Value| {
        visit(ObjectKey { project: project.map(str::to_string), kind: kind.to_string(), name: name.to_string() }, value);
    };
    for (k, v) in &config.users {
        put(None, "User", k, &|| json(v));
    }
    for (k, v) in &config.groups {
        put(None, "Group", k, &|| json(v));
    }
    for (k, v) in &config.channels {
        put(None, "Channel", k, &|| json(v));
    }
    for (k, v) in &config.shared_policies {
        put(None, "AlertPolicy", k, &|| json(v));
    }
    for (p, project) in &config.projects {
        let p = Some(p.as_str());
        put(p, "Project", &project.name, &|| json(project));
        for (k, v) in &project.servers {
            put(p, "Server", k, &|| json(v));
        }
        for (k, v) in &project.port_monitors {
            put(p, "PortMonitor", k, &|| json(v));
        }
        for (k, v) in &project.down_checks {
            put(p, "DownCheck", k, &|| json(v));
        }
        for (k, v) in &project.alert_policies {
            put(p, "AlertPolicy", k, &|| json(v));
        }
        for (k, v) in &project.process_policies {
            put(p, "ProcessPolicy", k, &|| json(v));
        }
        for (k, v) in &project.log_policies {
            put(p, "LogPolicy", k, &|| json(v));
        }
        for (k, v) in &project.maintenance {
            put(p, "Maintenance", k, &|| json(v));
        }
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What changes from `old` to `new`, in identity order (so grouped by project).
pub fn diff(old: &Config, new: &Config) -> Vec<Entry> {
    diff_objects(&objects(old), &objects(new))
}

/// What changes from the objects `before` to the objects `after`, in identity order.
pub fn diff_objects(before: &BTreeMap<ObjectKey, Value>, after: &BTreeMap<ObjectKey, Value>) -> Vec<Entry> {
    let mut out = Vec::new();
    for (key, old_value) in before {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(project: Option<&str>, kind: &str, name: &str) -> ObjectKey {
        ObjectKey { project: project.map(str::to_string), kind: kind.to_string(), name: name.to_string() }
    }

    #[test]
    fn diff_objects_lists_added_changed_and_removed_in_identity_order() {
        let before = BTreeMap::from([
            (key(Some("shop"), "PortMonitor", "web-01-ports"), json!({"ports": [22, 80], "interval": "1m"})),
            (key(Some("shop"), "Server", "web-01"), json!({"host": "203.0.113.10"})),
            (key(None, "User", "alice@example.com"), json!({"name": "Alice"})),
        ]);
        let after = BTreeMap::from([
            (key(Some("shop"), "PortMonitor", "web-01-ports"), json!({"ports": [22], "interval": "1m", "sms": true})),
            (key(Some("shop"), "Server", "web-02"), json!({"host": "203.0.113.11"})),
            (key(None, "User", "alice@example.com"), json!({"name": "Alice"})),
        ]);
        let entries = diff_objects(&before, &after);
        let summary: Vec<(Option<&str>, &str, &str, &str)> = entries
            .iter()
            .map(|e| {
                let change = match e.change {
                    Change::Added => "added",
                    Change::Removed => "removed",
                    Change::Changed { .. } => "changed",
                };
                (e.key.project.as_deref(), e.key.kind.as_str(), e.key.name.as_str(), change)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Some("shop"), "PortMonitor", "web-01-ports", "changed"),
                (Some("shop"), "Server", "web-01", "removed"),
                (Some("shop"), "Server", "web-02", "added"),
            ]
        );
        let Change::Changed { fields } = &entries[0].change else { unreachable!() };
        assert_eq!(
            fields,
            &[
                FieldChange { field: "ports".into(), before: json!([22, 80]), after: json!([22]) },
                FieldChange { field: "sms".into(), before: Value::Null, after: json!(true) },
            ]
        );
        assert!(diff_objects(&before, &before).is_empty());
        assert_eq!(diff_objects(&BTreeMap::new(), &after).len(), 3);
    }

    #[test]
    fn objects_round_trip_through_their_wire_form() {
        let object = Object { key: key(Some("shop"), "Server", "web-01"), value: json!({"host": "203.0.113.10"}) };
        let wire = serde_json::to_value(&object).unwrap();
        assert_eq!(wire, json!({"project": "shop", "kind": "Server", "name": "web-01", "value": {"host": "203.0.113.10"}}));
        assert_eq!(serde_json::from_value::<Object>(wire).unwrap(), object);
        let shared: Object =
            serde_json::from_value(json!({"project": null, "kind": "User", "name": "a@example.com", "value": {}})).unwrap();
        assert_eq!(shared.key.project, None);
    }
}
