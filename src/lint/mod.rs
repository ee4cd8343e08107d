//! Rendering diagnostics for people and machines: human (with a source snippet), JSON, and
//! GitHub Actions annotations.

use std::fmt::Write as _;

use serde_json::json;

use crate::config::{Diagnostic, Level, Sources};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

/// Render all diagnostics in `format`. Human and GitHub output end with a summary line.
/// `files` is how many files were checked, for the summary line.
pub fn render(diagnostics: &[Diagnostic], sources: &Sources, files: usize, format: Format) -> String {
    match format {
        Format::Human => human(diagnostics, sources, files),
        Format::Json => json(diagnostics, sources, files),
        Format::Github => github(diagnostics, sources, files),
    }
}

pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|d| d.level == Level::Error).count();
    (errors, diagnostics.len() - errors)
}

fn summary(diagnostics: &[Diagnostic], files: usize) -> String {
    let (errors, warnings) = counts(diagnostics);
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!("{}, {} in {}\n", plural(errors, "error"), plural(warnings, "warning"), plural(files, "file"))
}

/// `path:line:col` of a diagnostic, or `-` when it has no file.
fn place(d: &Diagnostic, sources: &Sources) -> String {
    match d.location {
        Some(l) => format!("{}:{}:{}", sources.display(l.file), l.line, l.col),
        None => "-".into(),
    }
}

fn human(diagnostics: &[Diagnostic], sources: &Sources, files: usize) -> String {
    let mut out = human_diagnostics(diagnostics, sources);
    out.push_str(&summary(diagnostics, files));
    out
}

/// Each diagnostic as `file:line:col: level[rule]: message`, the line with a caret under the
/// value, and the hint; without the closing count (`watchkeeper test` reports this way too).
pub fn human_diagnostics(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(out, "{}: {}[{}]: {}", place(d, sources), d.level.as_str(), d.rule, d.message);
        if let Some(l) = d.location
            && let Some(line) = sources.get(l.file).text.lines().nth(l.line as usize - 1)
        {
            let number = l.line.to_string();
            let pad = " ".repeat(number.len());
            let before: String = line.chars().take(l.col as usize - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            let width = token_width(line, l.col as usize - 1);
            let _ = writeln!(out, "{pad} |\n{number} | {line}\n{pad} | {before}{}", "^".repeat(width));
        }
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "  = hint: {hint}");
        }
        out.push('\n');
    }
    out
}

/// Width of the YAML token starting at character `start`: a quoted string, or a plain
/// scalar up to the next flow indicator or comment.
fn token_width(line: &str, start: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(start).collect();
    let width = match rest.first() {
        Some(&q @ ('"' | '\'')) => rest.iter().skip(1).position(|&c| c == q).map_or(rest.len(), |p| p + 2),
        Some(&open @ ('{' | '[')) => {
            // A flow collection: up to its matching bracket on this line.
            let close = if open == '{' { '}' } else { ']' };
            let mut depth = 0usize;
            rest.iter()
                .position(|&c| {
                    if c == open {
                        depth += 1;
                    } else if c == close {
                        depth -= 1;
                    }
                    depth == 0
                })
                .map_or(rest.len(), |p| p + 1)
        }
        Some(_) => {
            let end = rest.iter().position(|&c| matches!(c, ',' | ']' | '}' | '#')).unwrap_or(rest.len());
            let token: String = rest[..end].iter().collect();
            token.trim_end().chars().count()
        }
        None => 1,
    };
    width.max(1)
}

fn json(diagnostics: &[Diagnostic], sources: &Sources, files: usize) -> String {
    format!("{}\n", serde_json::to_string_pretty(&to_json(diagnostics, sources, files)).unwrap_or_default())
}

/// The JSON form of a lint run (what `--format json` prints; serve stores it for rejected revisions).
pub fn to_json(diagnostics: &[Diagnostic], sources: &Sources, files: usize) -> serde_json::Value {
    let (errors, warnings) = counts(diagnostics);
    let items: Vec<_> = diagnostics
        .iter()
        .map(|d| {
            let (file, line, col) = match d.location {
                Some(l) => (Some(sources.display(l.file)), Some(l.line), Some(l.col)),
                None => (None, None, None),
            };
            json!({ "severity": d.level, "rule": d.rule, "file": file, "line": line, "column": col, "message": d.message, "hint": d.hint })
        })
        .collect();
    json!({ "diagnostics": items, "errors": errors, "warnings": warnings, "files": files })
}

/// GitHub workflow commands: `::error file=…,line=…,col=…,title=…::message`.
fn github(diagnostics: &[Diagnostic], sources: &Sources, files: usize) -> String {
    let data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let property = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let mut out = String::new();
    for d in diagnostics {
        let mut props = Vec::new();
        if let Some(l) = d.location {
            props.push(format!("file={}", property(&sources.display(l.file))));
            props.push(format!("line={}", l.line));
            props.push(format!("col={}", l.col));
        }
        props.push(format!("title={}", property(d.rule)));
        let message = match &d.hint {
            Some(h) => format!("{} ({h})", d.message),
            None => d.message.clone(),
        };
        let _ = writeln!(out, "::{} {}::{}", d.level.as_str(), props.join(","), data(&message));
    }
    out.push_str(&summary(diagnostics, files));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::{FileId, Location, SourceFile};

    fn sample() -> (Vec<Diagnostic>, Sources) {
        let mut sources = Sources::default();
        sources.add(SourceFile { path: "servers.yaml".into(), text: "kind: Server\npolicy: linux-defualt # typo\n".into() });
        let d = Diagnostic {
            level: Level::Error,
            rule: "unknown-reference",
            location: Some(Location { file: FileId(0), line: 2, col: 9 }),
            message: "unknown policy `linux-defualt`".into(),
            hint: Some("did you mean `linux-default`?".into()),
        };
        (vec![d], sources)
    }

    #[test]
    fn human_output_marks_the_offending_token() {
        let (d, s) = sample();
        let out = render(&d, &s, 1, Format::Human);
        assert!(out.starts_with("servers.yaml:2:9: error[unknown-reference]: unknown policy `linux-defualt`\n"), "{out}");
        assert!(out.contains("2 | policy: linux-defualt # typo\n  |         ^^^^^^^^^^^^^\n"), "{out}");
        assert!(out.contains("= hint: did you mean `linux-default`?"));
        assert!(out.ends_with("1 error, 0 warnings in 1 file\n"));
    }

    #[test]
    fn flow_collections_are_underlined_to_their_closing_bracket() {
        assert_eq!(token_width("- { event_log: { log: System, id: 7 }, severity: fatal }", 2), 54);
        assert_eq!(token_width("  event_log: { log: System, id: 7 }, x", 13), 22);
        assert_eq!(token_width("ports: [1, [2]]", 7), 8);
        assert_eq!(token_width("name: web-01 # comment", 6), 6);
    }

    #[test]
    fn github_annotations_escape_properties_and_data() {
        let (mut d, s) = sample();
        d[0].message = "a, b: 100%\nnext".into();
        let out = render(&d, &s, 1, Format::Github);
        assert!(
            out.starts_with(
                "::error file=servers.yaml,line=2,col=9,title=unknown-reference::a, b: 100%25%0Anext (did you mean `linux-default`?)\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn json_output_has_every_field() {
        let (d, s) = sample();
        let v: serde_json::Value = serde_json::from_str(&render(&d, &s, 1, Format::Json)).unwrap();
        assert_eq!(v["errors"], 1);
        assert_eq!(v["diagnostics"][0]["file"], "servers.yaml");
        assert_eq!(v["diagnostics"][0]["line"], 2);
        assert_eq!(v["diagnostics"][0]["column"], 9);
        assert_eq!(v["diagnostics"][0]["severity"], "error");
    }
}
