//! `${NAME}` in channel settings: expanded from serve's environment when a message is sent (or a
//! node_exporter URL scraped), so secrets stay out of git. The expanded text is a secret and is
//! never logged.

/// A `${NAME}` a channel setting references is not in serve's environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{name}` is not set")]
pub struct MissingEnv {
    pub name: String,
}

/// Expand every `${NAME}` (`NAME` is `[A-Z0-9_]+`) in `text` through `lookup`. Anything else
/// — a lone `$`, `${lower}`, an unterminated `${` — is kept literally. The first missing
/// variable is the error; the expanded text is a secret and must not be logged.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, MissingEnv> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.bytes().take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_').count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
            let name = &after[..name_len];
            let value = lookup(name).ok_or_else(|| MissingEnv { name: name.to_string() })?;
            out.push_str(&value);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SMTP_PASSWORD" => Some("s3cret".into()),
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expand_env_substitutes_and_keeps_everything_else() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("${SMTP_PASSWORD}", "s3cret"),
            ("Bearer ${A}${A}-${EMPTY}!", "Bearer xx-!"),
            ("cost $5 and ${lower} and ${A", "cost $5 and ${lower} and ${A"),
            ("${}", "${}"),
            ("한글 ${A} 끝", "한글 x 끝"),
            ("$${A}", "$x"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, env).as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn expand_env_names_the_missing_variable_not_the_values() {
        let err = expand_env("user ${A} pass ${SMTP_PASSWORD} token ${SMS_TOKEN}", env).unwrap_err();
        assert_eq!(err.name, "SMS_TOKEN");
        assert_eq!(err.to_string(), "environment variable `SMS_TOKEN` is not set");
    }
}
