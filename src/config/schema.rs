//! JSON Schema for every kind, generated from the raw serde types so it cannot drift from
//! what lint accepts. Editors use it for completion and inline errors.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

use super::raw;

fn kind_schema<T: JsonSchema>(kind: &str) -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
    pin_kind(&mut schema, kind);
    schema
}

/// `kind` is a plain string in the Rust type; in the schema it is the kind's constant name.
fn pin_kind(schema: &mut Value, kind: &str) {
    schema["properties"]["kind"] = json!({ "const": kind });
}

/// The file name of the schema that accepts any kind.
pub const COMBINED: &str = "watchkeeper.json";

/// One schema per kind, as (file name, schema), plus [`COMBINED`] accepting any kind.
pub fn all() -> Vec<(String, Value)> {
    let mut out = vec![
        ("user.json".to_string(), kind_schema::<raw::User>("User")),
        ("group.json".to_string(), kind_schema::<raw::Group>("Group")),
        ("project.json".to_string(), kind_schema::<raw::Project>("Project")),
        ("server.json".to_string(), kind_schema::<raw::Server>("Server")),
        ("portmonitor.json".to_string(), kind_schema::<raw::PortMonitor>("PortMonitor")),
        ("downcheck.json".to_string(), kind_schema::<raw::DownCheck>("DownCheck")),
        ("alertpolicy.json".to_string(), kind_schema::<raw::AlertPolicy>("AlertPolicy")),
        ("processpolicy.json".to_string(), kind_schema::<raw::ProcessPolicy>("ProcessPolicy")),
        ("logpolicy.json".to_string(), kind_schema::<raw::LogPolicy>("LogPolicy")),
        ("channel.json".to_string(), kind_schema::<raw::Channel>("Channel")),
        ("maintenance.json".to_string(), kind_schema::<raw::Maintenance>("Maintenance")),
    ];
    let mut generator = SchemaGenerator::default();
    let refs = vec![
        generator.subschema_for::<raw::User>(),
        generator.subschema_for::<raw::Group>(),
        generator.subschema_for::<raw::Project>(),
        generator.subschema_for::<raw::Server>(),
        generator.subschema_for::<raw::PortMonitor>(),
        generator.subschema_for::<raw::DownCheck>(),
        generator.subschema_for::<raw::AlertPolicy>(),
        generator.subschema_for::<raw::ProcessPolicy>(),
        generator.subschema_for::<raw::LogPolicy>(),
        generator.subschema_for::<raw::Channel>(),
        generator.subschema_for::<raw::Maintenance>(),
    ];
    let mut defs = Value::Object(generator.take_definitions(true));
    for kind in super::load::KINDS {
        pin_kind(&mut defs[*kind], kind);
    }
    let combined = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "watchkeeper configuration document",
        "description": "Any watchkeeper document; `kind` selects which.",
        "oneOf": refs,
        "$defs": defs,
    });
    out.push((COMBINED.to_string(), combined));
    out
}

/// The schema files as written to disk: pretty JSON with a trailing newline.
pub fn files() -> Vec<(String, String)> {
    all().into_iter().map(|(name, v)| (name, format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()))).collect()
}
