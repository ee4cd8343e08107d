//! A parser for the Prometheus text exposition format 0.0.4 (what node_exporter serves), strict by default.
//!
//! The format, line by line (`\n` or `\r\n`; blank lines and surrounding blanks/tabs are ignored):
//!
//! ```text
//! # HELP node_load1 1m load average.          ← docstring, `\\` and `\n` escapes
//! # TYPE node_load1 gauge                     ← counter | gauge | histogram | summary | untyped
//! # any other comment                         ← ignored, including OpenMetrics' `# EOF`
//! node_load1 0.5
//! node_cpu_seconds_total{cpu="0",mode="idle"} 1425.86 1700000000000
//! ```
//!
//! A sample is a metric name, an optional label set (values quoted, with `\\`, `\"` and `\n` escapes; a
//! trailing comma is allowed), a value (a float, `NaN`, `+Inf`, `-Inf`) and an optional timestamp in
//! milliseconds. [`parse`] stops at the first malformed line; [`parse_lenient`] skips malformed lines
//! and reports them, for a caller that would rather have most of a page than none of it. Both refuse
//! input over the caller's size limit and lines over [`MAX_LINE_BYTES`], so the work is bounded.

use std::collections::HashMap;

/// The longest line accepted, in bytes (without its line ending).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How many skipped lines [`parse_lenient`] describes; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// A metric family's type, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// `untyped`, or OpenMetrics' `unknown`.
    Untyped,
    /// OpenMetrics only; accepted so that an OpenMetrics page does not fail on its `# TYPE` lines.
    GaugeHistogram,
    Info,
    StateSet,
}

impl MetricType {
    fn from_token(token: &str) -> Option<MetricType> {
        Some(match token {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" | "unknown" => MetricType::Untyped,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => return None,
        })
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written; names are unique within a sample.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the exporter gave one (node_exporter does not).
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A parsed page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// In page order.
    pub samples: Vec<Sample>,
    /// Family name → type, from `# TYPE` lines. A histogram's samples are named `<family>_bucket`,
    /// `<family>_sum` and `<family>_count`.
    pub types: HashMap<String, MetricType>,
    /// Family name → docstring (unescaped), from `# HELP` lines.
    pub help: HashMap<String, String>,
}

/// What was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based; 0 when the error concerns the input as a whole (its size).
    pub line: usize,
    pub message: String,
}

/// What [`parse_lenient`] kept, and what it skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lenient {
    pub exposition: Exposition,
    /// The first [`MAX_REPORTED_ERRORS`] skipped lines, in page order.
    pub errors: Vec<ParseError>,
    /// How many lines were skipped in all.
    pub skipped_lines: usize,
}

/// Parse a whole page; the first malformed line is an error. `max_bytes` bounds the input.
pub fn parse(input: impl AsRef<[u8]>, max_bytes: usize) -> Result<Exposition, ParseError> {
    parse_lines(input.as_ref(), max_bytes, Err)
}

/// Parse a page, skipping malformed lines and reporting them. Only input over `max_bytes` is an error.
pub fn parse_lenient(input: impl AsRef<[u8]>, max_bytes: usize) -> Result<Lenient, ParseError> {
    let mut errors = Vec::new();
    let mut skipped_lines = 0;
    let exposition = parse_lines(input.as_ref(), max_bytes, |error| {
        skipped_lines += 1;
        if errors.len() < MAX_REPORTED_ERRORS {
            errors.push(error);
        }
        Ok(())
    })?;
    Ok(Lenient { exposition, errors, skipped_lines })
}

/// The line loop shared by both modes; `on_error` decides whether a bad line ends the parse.
fn parse_lines(
    input: &[u8],
    max_bytes: usize,
    mut on_error: impl FnMut(ParseError) -> Result<(), ParseError>,
) -> Result<Exposition, ParseError> {
    if input.len() > max_bytes {
        return Err(ParseError { line: 0, message: format!("input is {} bytes, over the limit of {max_bytes}", input.len()) });
    }
    let mut exposition = Exposition::default();
    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        if let Err(message) = parse_line(raw, &mut exposition) {
            on_error(ParseError { line: index + 1, message })?;
        }
    }
    Ok(exposition)
}

fn parse_line(raw: &[u8], exposition: &mut Exposition) -> Result<(), String> {
    // A trailing `\r` is the CRLF line ending, not part of the line.
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.len() > MAX_LINE_BYTES {
        return Err(format!("line is {} bytes, over the limit of {MAX_LINE_BYTES}", raw.len()));
    }
    let text = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1))?;
    // Blanks and tabs around the tokens are insignificant.
    let text = text.trim_start_matches(BLANKS).trim_end_matches(['\r', ' ', '\t']);
    if text.is_empty() {
        return Ok(());
    }
    if let Some(comment) = text.strip_prefix('#') {
        return parse_comment(comment, exposition);
    }
    exposition.samples.push(parse_sample(text)?);
    Ok(())
}

const BLANKS: [char; 2] = [' ', '\t'];

/// `text` up to its first blank, and the rest with its leading blanks removed.
fn split_token(text: &str) -> (&str, &str) {
    match text.find(BLANKS) {
        Some(end) => (&text[..end], text[end..].trim_start_matches(BLANKS)),
        None => (text, ""),
    }
}

fn parse_comment(comment: &str, exposition: &mut Exposition) -> Result<(), String> {
    let (keyword, rest) = split_token(comment.trim_start_matches(BLANKS));
    match keyword {
        "HELP" => {
            let (name, doc) = split_token(rest);
            check_metric_name(name, "HELP")?;
            if exposition.help.contains_key(name) {
                return Err(format!("second HELP line for {name}"));
            }
            exposition.help.insert(name.to_owned(), unescape_help(doc));
            Ok(())
        }
        "TYPE" => {
            let (name, rest) = split_token(rest);
            check_metric_name(name, "TYPE")?;
            let (token, rest) = split_token(rest);
            if token.is_empty() {
                return Err(format!("TYPE line for {name} has no type"));
            }
            if !rest.is_empty() {
                return Err(format!("unexpected text after the type of {name}: {rest:?}"));
            }
            let Some(ty) = MetricType::from_token(token) else {
                return Err(format!("unknown metric type {token:?} for {name} (expected counter, gauge, histogram, summary or untyped)"));
            };
            if exposition.types.contains_key(name) {
                return Err(format!("second TYPE line for {name}"));
            }
            exposition.types.insert(name.to_owned(), ty);
            Ok(())
        }
        // A plain comment, OpenMetrics' `# EOF` among them.
        _ => Ok(()),
    }
}

fn check_metric_name(name: &str, keyword: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{keyword} line without a metric name"));
    }
    if metric_name_len(name.as_bytes()) != name.len() {
        return Err(format!("invalid metric name {name:?} in {keyword} line"));
    }
    Ok(())
}

/// HELP docstrings escape `\\` and `\n`; any other backslash is kept as written (a docstring is only
/// for people, so it is not worth failing a page over).
fn unescape_help(doc: &str) -> String {
    if !doc.contains('\\') {
        return doc.to_owned();
    }
    let mut out = String::with_capacity(doc.len());
    let mut chars = doc.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Length of the metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) at the start of `bytes`; 0 if there is none.
fn metric_name_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' || *b == b':' => {}
        _ => return 0,
    }
    bytes.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b':').count()
}

/// Length of the label name (`[a-zA-Z_][a-zA-Z0-9_]*`) at the start of `bytes`; 0 if there is none.
fn label_name_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return 0,
    }
    bytes.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count()
}

fn skip_blanks(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t')) {
        pos += 1;
    }
    pos
}

/// The character at byte `pos` of `text` (always a char boundary here), for messages.
fn found(text: &str, pos: usize) -> String {
    match text[pos..].chars().next() {
        Some(c) => format!("{c:?}"),
        None => "the end of the line".to_owned(),
    }
}

/// `text` is a trimmed, non-empty line that is not a comment.
fn parse_sample(text: &str) -> Result<Sample, String> {
    let bytes = text.as_bytes();
    let name_end = metric_name_len(bytes);
    if name_end == 0 {
        return Err(format!("expected a metric name, found {}", found(text, 0)));
    }
    let name = &text[..name_end];
    let mut pos = skip_blanks(bytes, name_end);
    let mut labels = Vec::new();
    if bytes.get(pos) == Some(&b'{') {
        pos = parse_labels(text, pos + 1, &mut labels)?;
    } else if pos == name_end && pos < bytes.len() {
        // Neither a blank nor `{` after the name: a character that cannot be in a name.
        return Err(format!("unexpected character {} in metric name {name:?}", found(text, pos)));
    }

    let (value_token, rest) = split_token(text[pos..].trim_start_matches(BLANKS));
    if value_token.is_empty() {
        return Err(format!("sample {name} has no value"));
    }
    let value = parse_value(value_token).ok_or_else(|| format!("invalid value {value_token:?} for {name}"))?;
    let (timestamp_token, rest) = split_token(rest);
    let timestamp_ms = match timestamp_token {
        "" => None,
        token => Some(token.parse::<i64>().map_err(|_| format!("invalid timestamp {token:?} for {name} (expected integer milliseconds)"))?),
    };
    if !rest.is_empty() {
        return Err(format!("unexpected text after the timestamp of {name}: {rest:?}"));
    }
    Ok(Sample { name: name.to_owned(), labels, value, timestamp_ms })
}

/// A float (`1`, `-0.5`, `1.5e+09`), `NaN`, `+Inf` or `-Inf` (words in any case, as Go's
/// `strconv.ParseFloat` reads them). Rust's parser takes exactly this: no hex, no digit separators.
fn parse_value(token: &str) -> Option<f64> {
    token.parse::<f64>().ok()
}

/// Parse the label set starting after `{`; returns the position after `}`.
fn parse_labels(text: &str, mut pos: usize, labels: &mut Vec<(String, String)>) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let unterminated = || "unterminated label set: missing '}'".to_owned();
    loop {
        pos = skip_blanks(bytes, pos);
        match bytes.get(pos) {
            None => return Err(unterminated()),
            Some(b'}') => break,
            Some(_) => {}
        }
        let name_len = label_name_len(&bytes[pos..]);
        if name_len == 0 {
            return Err(format!("expected a label name or '}}', found {}", found(text, pos)));
        }
        let label = &text[pos..pos + name_len];
        pos = skip_blanks(bytes, pos + name_len);
        if bytes.get(pos) != Some(&b'=') {
            return Err(format!("expected '=' after label name {label:?}, found {}", found(text, pos)));
        }
        pos = skip_blanks(bytes, pos + 1);
        if bytes.get(pos) != Some(&b'"') {
            return Err(format!("expected '\"' to open the value of label {label:?}, found {}", found(text, pos)));
        }
        let (value, next) = parse_label_value(text, pos + 1, label)?;
        labels.push((label.to_owned(), value));
        pos = skip_blanks(bytes, next);
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b'}') => break,
            None => return Err(unterminated()),
            Some(_) => return Err(format!("expected ',' or '}}' after the value of label {label:?}, found {}", found(text, pos))),
        }
    }
    check_unique_labels(labels)?;
    Ok(pos + 1)
}

fn check_unique_labels(labels: &[(String, String)]) -> Result<(), String> {
    let duplicate = |name: &str| format!("duplicate label {name:?}");
    if labels.len() <= 8 {
        for (i, (name, _)) in labels.iter().enumerate() {
            if labels[..i].iter().any(|(other, _)| other == name) {
                return Err(duplicate(name));
            }
        }
    } else {
        // Sort rather than compare all pairs: a 64 KiB line can hold thousands of labels.
        let mut names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(duplicate(pair[0]));
        }
    }
    Ok(())
}

/// Parse a quoted label value whose first byte is at `start` (after the opening quote); returns the
/// unescaped value and the position after the closing quote.
fn parse_label_value(text: &str, start: usize, label: &str) -> Result<(String, usize), String> {
    let bytes = text.as_bytes();
    let mut value = String::new();
    let mut run = start;
    let mut pos = start;
    // Every position where a run ends is at an ASCII byte, so each slice is on char boundaries.
    while let Some(&b) = bytes.get(pos) {
        match b {
            b'"' => {
                value.push_str(&text[run..pos]);
                return Ok((value, pos + 1));
            }
            b'\\' => {
                value.push_str(&text[run..pos]);
                match bytes.get(pos + 1) {
                    Some(b'\\') => value.push('\\'),
                    Some(b'"') => value.push('"'),
                    Some(b'n') => value.push('\n'),
                    Some(_) => {
                        return Err(format!(
                            "invalid escape sequence '\\{}' in the value of label {label:?} (expected \\\\, \\\" or \\n)",
                            text[pos + 1..].chars().next().unwrap_or(' ')
                        ));
                    }
                    None => break,
                }
                pos += 2;
                run = pos;
            }
            _ => pos += 1,
        }
    }
    Err(format!("unterminated value of label {label:?}: missing closing '\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn only_sample(text: &str) -> Sample {
        let exposition = parse(text, LIMIT).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(exposition.samples.len(), 1, "{text:?}");
        exposition.samples.into_iter().next().unwrap()
    }

    /// Text, name, labels, value, timestamp.
    type SampleCase = (&'static str, &'static str, &'static [(&'static str, &'static str)], f64, Option<i64>);

    #[test]
    fn parses_every_sample_construct() {
        #[rustfmt::skip]
        let cases: &[SampleCase] = &[
            ("node_load1 0.5", "node_load1", &[], 0.5, None),
            ("job:rate5m 1", "job:rate5m", &[], 1.0, None),
            ("_x 1", "_x", &[], 1.0, None),
            ("a{} 1", "a", &[], 1.0, None),
            (r#"a{b="c"} 1"#, "a", &[("b", "c")], 1.0, None),
            (r#"a{b="c",} 1"#, "a", &[("b", "c")], 1.0, None),
            (r#"a{b="c",d="e"} 2"#, "a", &[("b", "c"), ("d", "e")], 2.0, None),
            ("a { b = \"c\" ,\td=\"e\" } 2", "a", &[("b", "c"), ("d", "e")], 2.0, None),
            (r#"a{b="c"}3"#, "a", &[("b", "c")], 3.0, None),
            (r#"a{b=""} 1"#, "a", &[("b", "")], 1.0, None),
            (r#"a{path="C:\\dir\\"} 1"#, "a", &[("path", r"C:\dir\")], 1.0, None),
            (r#"a{q="say \"hi\""} 1"#, "a", &[("q", r#"say "hi""#)], 1.0, None),
            (r#"a{m="one\ntwo"} 1"#, "a", &[("m", "one\ntwo")], 1.0, None),
            (r#"a{b="}, #=x"} 1"#, "a", &[("b", "}, #=x")], 1.0, None),
            (r#"a{city="서울"} 1"#, "a", &[("city", "서울")], 1.0, None),
            ("a 1.5e+09", "a", &[], 1.5e9, None),
            ("a -0.25", "a", &[], -0.25, None),
            ("a 3.1520379904e+10", "a", &[], 3.1520379904e10, None),
            ("a +Inf", "a", &[], f64::INFINITY, None),
            ("a -Inf", "a", &[], f64::NEG_INFINITY, None),
            ("a 1 1700000000000", "a", &[], 1.0, Some(1_700_000_000_000)),
            ("a 1 -5", "a", &[], 1.0, Some(-5)),
            ("a\t1\t17", "a", &[], 1.0, Some(17)),
            ("  a 1", "a", &[], 1.0, None),
            ("a 1   \t", "a", &[], 1.0, None),
            ("a 1\r", "a", &[], 1.0, None),
            ("a 1 5 \r", "a", &[], 1.0, Some(5)),
        ];
        for &(text, name, pairs, value, timestamp_ms) in cases {
            let sample = only_sample(text);
            assert_eq!(sample, Sample { name: name.to_owned(), labels: labels(pairs), value, timestamp_ms }, "{text:?}");
        }
    }

    #[test]
    fn nan_is_a_value() {
        assert!(only_sample("a NaN").value.is_nan());
        assert!(only_sample(r#"a{b="c"} NaN 5"#).value.is_nan());
    }

    #[test]
    fn reads_help_type_comments_and_blank_lines() {
        let page = "# HELP node_load1 1m load average.\n\
                    # TYPE node_load1 gauge\n\
                    node_load1 0.5\n\
                    \n\
                    # a comment that is neither HELP nor TYPE\n\
                    #no space\n\
                    # HELP http_requests_total Requests\\nby \\\\code\\x.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{code=\"200\"} 10\r\n\
                    \t \r\n\
                    # TYPE rpc_seconds summary\n\
                    # TYPE latency histogram\n\
                    # TYPE up untyped\n\
                    # TYPE legacy unknown\n\
                    # TYPE build info\n\
                    latency_bucket{le=\"+Inf\"} 3\n\
                    # EOF\n";
        let exposition = parse(page, LIMIT).unwrap();
        let names: Vec<&str> = exposition.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["node_load1", "http_requests_total", "latency_bucket"]);
        assert_eq!(exposition.samples[1].label("code"), Some("200"));
        assert_eq!(exposition.samples[2].label("le"), Some("+Inf"));
        let types: Vec<(&str, MetricType)> = {
            let mut t: Vec<_> = exposition.types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            t.sort_by_key(|(k, _)| *k);
            t
        };
        assert_eq!(
            types,
            [
                ("build", MetricType::Info),
                ("http_requests_total", MetricType::Counter),
                ("latency", MetricType::Histogram),
                ("legacy", MetricType::Untyped),
                ("node_load1", MetricType::Gauge),
                ("rpc_seconds", MetricType::Summary),
                ("up", MetricType::Untyped),
            ]
        );
        assert_eq!(exposition.help["node_load1"], "1m load average.");
        assert_eq!(exposition.help["http_requests_total"], "Requests\nby \\code\\x.");
    }

    #[test]
    fn empty_and_comment_only_pages_have_no_samples() {
        for page in ["", "\n\n", "# EOF\n", "# HELP a x\n", "\r\n"] {
            let exposition = parse(page, LIMIT).unwrap();
            assert!(exposition.samples.is_empty(), "{page:?}");
        }
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        #[rustfmt::skip]
        let cases: &[(&str, usize, &str)] = &[
            // page, line, part of the message
            ("a 1\nb\n", 2, "sample b has no value"),
            ("a 1\n\n\nb{c=\"d\"}\n", 4, "sample b has no value"),
            ("a xyz", 1, "invalid value \"xyz\" for a"),
            ("a 0x10", 1, "invalid value \"0x10\""),
            ("a 1_000", 1, "invalid value \"1_000\""),
            ("a 1 2.5", 1, "invalid timestamp \"2.5\" for a"),
            ("a 1 2 3", 1, "unexpected text after the timestamp of a: \"3\""),
            ("a-b 1", 1, "unexpected character '-' in metric name \"a\""),
            ("1a 1", 1, "expected a metric name, found '1'"),
            ("{b=\"c\"} 1", 1, "expected a metric name, found '{'"),
            ("a{b=\"c} 1", 1, "unterminated value of label \"b\""),
            ("a{b=\"c\" 1", 1, "expected ',' or '}' after the value of label \"b\", found '1'"),
            ("a{b=\"c\"", 1, "unterminated label set"),
            ("a{b=\"c\",", 1, "unterminated label set"),
            ("a{b=c} 1", 1, "expected '\"' to open the value of label \"b\", found 'c'"),
            ("a{b \"c\"} 1", 1, "expected '=' after label name \"b\", found '\"'"),
            ("a{1b=\"c\"} 1", 1, "expected a label name or '}', found '1'"),
            ("a{b.c=\"d\"} 1", 1, "expected '=' after label name \"b\", found '.'"),
            ("a{b=\"\\x\"} 1", 1, "invalid escape sequence '\\x' in the value of label \"b\""),
            ("a{b=\"c\\", 1, "unterminated value of label \"b\""),
            ("a{b=\"1\",b=\"2\"} 1", 1, "duplicate label \"b\""),
            ("# TYPE a bogus", 1, "unknown metric type \"bogus\" for a"),
            ("# TYPE a", 1, "TYPE line for a has no type"),
            ("# TYPE a counter extra", 1, "unexpected text after the type of a"),
            ("# TYPE 1a counter", 1, "invalid metric name \"1a\" in TYPE line"),
            ("# TYPE", 1, "TYPE line without a metric name"),
            ("# HELP", 1, "HELP line without a metric name"),
            ("# HELP a-b x", 1, "invalid metric name \"a-b\" in HELP line"),
            ("# TYPE a counter\n# TYPE a gauge\n", 2, "second TYPE line for a"),
            ("# HELP a x\na 1\n# HELP a y\n", 3, "second HELP line for a"),
        ];
        for &(page, line, message) in cases {
            let error = parse(page, LIMIT).expect_err(page);
            assert_eq!(error.line, line, "{page:?}: {error}");
            assert!(error.message.contains(message), "{page:?}: expected {message:?} in {:?}", error.message);
            assert_eq!(error.to_string(), format!("line {line}: {}", error.message));
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_on_its_line() {
        let error = parse(b"a 1\nb{c=\"\xff\"} 1\n", LIMIT).unwrap_err();
        assert_eq!((error.line, error.message.as_str()), (2, "invalid UTF-8 at byte 6"));
    }

    #[test]
    fn input_over_the_callers_limit_is_refused() {
        let page = "a 1\nb 2\n";
        assert_eq!(parse(page, page.len()).unwrap().samples.len(), 2);
        let error = parse(page, page.len() - 1).unwrap_err();
        assert_eq!(error, ParseError { line: 0, message: "input is 8 bytes, over the limit of 7".to_owned() });
        assert_eq!(parse_lenient(page, 7).unwrap_err(), error);
    }

    #[test]
    fn lines_over_64_kib_are_refused() {
        let label = |len: usize| format!("a{{b=\"{}\"}} 1", "x".repeat(len - "a{b=\"\"} 1".len()));
        let longest = label(MAX_LINE_BYTES);
        assert_eq!(longest.len(), MAX_LINE_BYTES);
        assert_eq!(parse(format!("{longest}\r\n"), LIMIT).unwrap().samples.len(), 1);
        let error = parse(format!("a 1\n{}\n", label(MAX_LINE_BYTES + 1)), LIMIT).unwrap_err();
        assert_eq!(error.line, 2);
        assert_eq!(error.message, "line is 65537 bytes, over the limit of 65536");
    }

    #[test]
    fn lenient_parsing_skips_and_reports_bad_lines() {
        let page = "a 1\nb\nc{d=\"e\"} 3\n# TYPE c bogus\nd 4\n";
        let lenient = parse_lenient(page, LIMIT).unwrap();
        let names: Vec<&str> = lenient.exposition.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        let lines: Vec<usize> = lenient.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(lenient.skipped_lines, 2);

        let garbage = "!\n".repeat(MAX_REPORTED_ERRORS + 5);
        let lenient = parse_lenient(garbage, LIMIT).unwrap();
        assert_eq!(lenient.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(lenient.skipped_lines, MAX_REPORTED_ERRORS + 5);
    }

    #[test]
    fn many_labels_on_one_line_are_checked_for_duplicates() {
        let mut line: String = (0..2000).map(|i| format!("l{i}=\"v\",")).collect();
        assert_eq!(parse(format!("a{{{line}}} 1"), LIMIT).unwrap().samples[0].labels.len(), 2000);
        line.push_str("l1999=\"again\"");
        assert_eq!(parse(format!("a{{{line}}} 1"), LIMIT).unwrap_err().message, "duplicate label \"l1999\"");
    }

    #[test]
    fn parses_a_two_megabyte_page() {
        let mut page = String::new();
        let mut lines = 0;
        while page.len() < 2 << 20 {
            page.push_str(&format!("node_cpu_seconds_total{{cpu=\"{}\",mode=\"idle\"}} {}.25\n", lines % 64, lines));
            lines += 1;
        }
        let started = std::time::Instant::now();
        let exposition = parse(&page, 4 << 20).unwrap();
        eprintln!("parsed {} bytes, {lines} samples in {:?}", page.len(), started.elapsed());
        assert_eq!(exposition.samples.len(), lines);
        assert_eq!(exposition.samples[lines - 1].value, (lines - 1) as f64 + 0.25);
    }

    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::super::*;

        fn escape(value: &str) -> String {
            value.replace('\\', r"\\").replace('"', r#"\""#).replace('\n', r"\n")
        }

        fn render_value(value: f64) -> String {
            match value {
                v if v.is_nan() => "NaN".to_owned(),
                f64::INFINITY => "+Inf".to_owned(),
                f64::NEG_INFINITY => "-Inf".to_owned(),
                // Rust's Display gives the shortest text that reads back to the same float.
                v => v.to_string(),
            }
        }

        /// The page a well-behaved exporter would write for these families and samples.
        fn render(types: &BTreeMap<String, MetricType>, samples: &[Sample], crlf: bool) -> String {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut page = String::new();
            for (name, ty) in types {
                let ty = format!("{ty:?}").to_lowercase();
                page.push_str(&format!("# HELP {name} Help for {name}.{end}# TYPE {name} {ty}{end}"));
            }
            for sample in samples {
                page.push_str(&sample.name);
                if !sample.labels.is_empty() {
                    let labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                    page.push_str(&format!("{{{}}}", labels.join(",")));
                }
                page.push(' ');
                page.push_str(&render_value(sample.value));
                if let Some(ts) = sample.timestamp_ms {
                    page.push_str(&format!(" {ts}"));
                }
                page.push_str(end);
            }
            page
        }

        fn value() -> impl Strategy<Value = f64> {
            prop_oneof![
                8 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
                2 => (-1_000_000i64..1_000_000).prop_map(|v| v as f64 / 100.0),
                1 => Just(f64::INFINITY),
                1 => Just(f64::NEG_INFINITY),
                1 => Just(f64::NAN),
            ]
        }

        fn sample() -> impl Strategy<Value = Sample> {
            let labels = proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "[a-z \"\\\\\n,{}=#é]{0,12}", 0..5);
            ("[a-zA-Z_:][a-zA-Z0-9_:]{0,16}", labels, value(), proptest::option::of(any::<i64>()))
                .prop_map(|(name, labels, value, timestamp_ms)| Sample { name, labels: labels.into_iter().collect(), value, timestamp_ms })
        }

        fn metric_type() -> impl Strategy<Value = MetricType> {
            prop_oneof![
                Just(MetricType::Counter),
                Just(MetricType::Gauge),
                Just(MetricType::Histogram),
                Just(MetricType::Summary),
                Just(MetricType::Untyped),
            ]
        }

        fn same_value(a: f64, b: f64) -> bool {
            a == b || (a.is_nan() && b.is_nan())
        }

        proptest! {
            #[test]
            fn rendered_samples_parse_back_to_themselves(
                samples in proptest::collection::vec(sample(), 0..20),
                types in proptest::collection::btree_map("[a-z_][a-z0-9_]{0,10}", metric_type(), 0..4),
                crlf in any::<bool>(),
            ) {
                let page = render(&types, &samples, crlf);
                let exposition = parse(&page, usize::MAX).map_err(|e| TestCaseError::fail(format!("{e}\n{page}")))?;
                prop_assert_eq!(exposition.samples.len(), samples.len());
                for (parsed, written) in exposition.samples.iter().zip(&samples) {
                    prop_assert_eq!(&parsed.name, &written.name);
                    prop_assert_eq!(&parsed.labels, &written.labels);
                    prop_assert!(same_value(parsed.value, written.value), "{} != {}", parsed.value, written.value);
                    prop_assert_eq!(parsed.timestamp_ms, written.timestamp_ms);
                }
                let parsed_types: BTreeMap<String, MetricType> = exposition.types.into_iter().collect();
                prop_assert_eq!(parsed_types, types);
            }

            #[test]
            fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
                check_modes_agree(&input)?;
            }

            #[test]
            fn arbitrary_text_never_panics(input in "\\PC{0,300}") {
                check_modes_agree(input.as_bytes())?;
            }

            #[test]
            fn near_miss_pages_never_panic(input in "[a-c_:{}=\",\\\\# \t\r\n0-9.eE+\\-InfNa]{0,300}") {
                check_modes_agree(input.as_bytes())?;
            }
        }

        /// Strict and lenient parsing agree: the same page when all is well, the same first error when not.
        fn check_modes_agree(input: &[u8]) -> Result<(), TestCaseError> {
            let lenient = parse_lenient(input, 1 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(lenient.errors.len() <= lenient.skipped_lines);
            match parse(input, 1 << 20) {
                Ok(exposition) => {
                    prop_assert_eq!(lenient.skipped_lines, 0);
                    prop_assert_eq!(exposition.samples.len(), lenient.exposition.samples.len());
                }
                Err(error) => {
                    prop_assert!(error.line >= 1);
                    prop_assert_eq!(Some(&error), lenient.errors.first());
                }
            }
            Ok(())
        }
    }
}
