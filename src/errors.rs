//! Error text as operators read it: an error and its chain of causes on one line.

/// An error and its sources, `: `-joined (reqwest's own message is only the outermost layer).
/// Text from elsewhere (a server's answer, a gateway's error) as one short line: control
/// characters and runs of white space become one space; beyond `max_chars`, cut with `…`.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max_chars { format!("{}…", flat.chars().take(max_chars).collect::<String>()) } else { flat }
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A word that is not one of an enum's words (a corrupt database row, an unknown query value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{word}`")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}
