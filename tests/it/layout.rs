//! The module graph documented in `src/lib.rs` is the graph the code has: every `crate::` path
//! in `src/` is an edge the table allows, every allowed edge is used, and the table only points
//! down (so there are no cycles and no upward imports).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `| module | uses |` table of lib.rs's "# Dependencies", in order.
fn documented() -> Vec<(String, BTreeSet<String>)> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let mut rows = Vec::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("//! | `")) {
        let (module, rest) = line.split_once('`').unwrap();
        let uses = rest.trim_start_matches(" |").trim_end_matches(" |").trim();
        let uses = if uses == "—" { BTreeSet::new() } else { uses.split(", ").map(|u| u.trim_matches('`').to_string()).collect() };
        rows.push((module.to_string(), uses));
    }
    assert!(rows.len() > 10, "the dependency table in src/lib.rs was not found");
    rows
}

/// Remove `//` comments (line and doc), so a path named in prose is not an edge.
fn code_only(text: &str) -> String {
    text.lines().map(|line| line.split_once("//").map_or(line, |(code, _)| code)).collect::<Vec<_>>().join("\n")
}

/// Every module `text` names through `crate::`: `crate::store::Store`, and the heads of a
/// grouped `use crate::{alert::X, store}`.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let head: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.insert(head);
            }
        } else {
            out.insert(after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
        rest = after;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (module → modules it uses) as the code has it.
fn actual(modules: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = code_only(&std::fs::read_to_string(&file).unwrap());
        let uses: Vec<String> = used_modules(&text).into_iter().filter(|m| modules.contains(m) && *m != top).collect();
        edges.entry(top).or_default().extend(uses);
    }
    edges
}

#[test]
fn uses_follow_the_documented_graph() {
    let table = documented();
    let modules: BTreeSet<String> = table.iter().map(|(m, _)| m.clone()).collect();
    // Every module of the crate has a row, and only those.
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: BTreeSet<String> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';').to_string()).collect();
    assert_eq!(modules, declared, "the dependency table and the `pub mod` lines of lib.rs name different modules");

    // The table only points down: each module uses modules of rows above it.
    let mut above = BTreeSet::new();
    for (module, uses) in &table {
        let upward: Vec<&String> = uses.iter().filter(|u| !above.contains(*u)).collect();
        assert!(upward.is_empty(), "`{module}` is documented as using {upward:?}, which are not above it in the table");
        above.insert(module.clone());
    }

    let actual = actual(&modules);
    let mut problems = Vec::new();
    for (module, allowed) in &table {
        let used = actual.get(module).cloned().unwrap_or_default();
        for extra in used.difference(allowed) {
            problems.push(format!("`{module}` uses `{extra}`, which the table in src/lib.rs does not allow"));
        }
        for unused in allowed.difference(&used) {
            problems.push(format!("`{module}` is documented as using `{unused}`, but no code does"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_sees_single_grouped_and_nested_paths() {
    let text = code_only(
        "use crate::alert::Decision;\nuse crate::{store::Store, agent};\nlet x = crate::clock::now_ms(); // crate::serve in a comment\n",
    );
    let found = used_modules(&text);
    assert_eq!(found, ["agent", "alert", "clock", "store"].map(String::from).into_iter().collect());
}
