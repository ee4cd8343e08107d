//! Query-string parameters, checked strictly: an unknown or repeated name, or a value that does
//! not parse, is a 400 naming the parameter — never silently ignored.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::ApiError;

/// The query string of a request as name/value pairs, in order.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Params, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {}", e.body_text())))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// Reject names outside `allowed` and names given twice.
    pub fn allow(&self, allowed: &[&str]) -> Result<&Params, ApiError> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let expected =
                    if allowed.is_empty() { "this endpoint takes none".to_string() } else { format!("expected {}", allowed.join(", ")) };
                return Err(ApiError::bad_request(format!("unknown query parameter `{name}` ({expected})")));
            }
            if self.0[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad_request(format!("query parameter `{name}` is given more than once")));
            }
        }
        Ok(self)
    }

    /// The value of `name`; an empty value counts as absent (as HTML forms send it).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// One of `choices`, or absent.
    pub fn one_of<'c>(&self, name: &str, choices: &[&'c str]) -> Result<Option<&'c str>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => choices
                .iter()
                .find(|c| **c == v)
                .map(|c| Some(*c))
                .ok_or_else(|| ApiError::bad_request(format!("invalid `{name}`: `{v}` is not one of {}", choices.join(", ")))),
        }
    }

    /// An integer in `min..=max`, or absent.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!("invalid `{name}`: `{v}` is not an integer from {min} to {max}"))),
            },
        }
    }

    /// A point in time: epoch milliseconds or RFC 3339 (`2026-03-05T14:00:00+09:00`), or absent.
    pub fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.str(name) else { return Ok(None) };
        if let Ok(ms) = v.parse::<i64>() {
            if jiff::Timestamp::from_millisecond(ms).is_ok() {
                return Ok(Some(ms));
            }
        } else if let Ok(t) = v.parse::<jiff::Timestamp>() {
            return Ok(Some(t.as_millisecond()));
        }
        Err(ApiError::bad_request(format!(
            "invalid `{name}`: `{v}` is neither epoch milliseconds nor an RFC 3339 time like 2026-03-05T14:00:00+09:00"
        )))
    }

    /// `from` and `to` as a range; `from` after `to` is an error.
    pub fn range_ms(&self) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let (from, to) = (self.time_ms("from")?, self.time_ms("to")?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ApiError::bad_request("invalid `from`: it is after `to`"));
        }
        Ok((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
    }

    fn message(e: ApiError) -> String {
        e.message
    }

    #[test]
    fn unknown_and_repeated_names_are_rejected() {
        assert!(params(&[("status", "firing")]).allow(&["status"]).is_ok());
        let e = params(&[("stauts", "firing")]).allow(&["status", "severity"]).err().unwrap();
        assert_eq!(message(e), "unknown query parameter `stauts` (expected status, severity)");
        let e = params(&[("to", "1"), ("to", "2")]).allow(&["to"]).err().unwrap();
        assert!(message(e).contains("`to` is given more than once"));
    }

    #[test]
    fn values_parse_or_name_the_parameter() {
        let p = params(&[("severity", "fatal"), ("days", "7"), ("empty", ""), ("bad", "nope")]);
        assert_eq!(p.one_of("severity", &["warning", "fatal"]).unwrap(), Some("fatal"));
        assert_eq!(p.one_of("empty", &["a"]).unwrap(), None);
        assert!(message(p.one_of("bad", &["a", "b"]).unwrap_err()).starts_with("invalid `bad`"));
        assert_eq!(p.int("days", 1, 30).unwrap(), Some(7));
        assert!(message(p.int("days", 1, 5).unwrap_err()).contains("from 1 to 5"));
    }

    #[test]
    fn times_are_epoch_ms_or_rfc3339() {
        let p = params(&[("a", "1700000000000"), ("b", "2023-11-14T22:13:20Z"), ("c", "2023-11-15T07:13:20+09:00"), ("d", "yesterday")]);
        assert_eq!(p.time_ms("a").unwrap(), Some(1_700_000_000_000));
        assert_eq!(p.time_ms("b").unwrap(), Some(1_700_000_000_000));
        assert_eq!(p.time_ms("c").unwrap(), Some(1_700_000_000_000));
        assert!(message(p.time_ms("d").unwrap_err()).starts_with("invalid `d`"));
        assert_eq!(p.time_ms("missing").unwrap(), None);
        let e = params(&[("from", "2000"), ("to", "1000")]).range_ms().unwrap_err();
        assert!(message(e).contains("`from`"));
    }
}
