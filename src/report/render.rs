//! A report as tables, and the tables as a readable text or as CSV: RFC 4180 quoting, a header
//! row per table, CRLF line ends, UTF-8 with a byte-order mark (so spreadsheet programs read
//! Korean server names right), numbers with a dot and two decimals, times with their offset.

use std::fmt::Write as _;

use super::{Body, Change, Report};

/// One value of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Data as stored: a server's name, a description, a time.
    Text(String),
    /// A fixed word of the report itself (a summary row's figure, a severity): the same in
    /// every export, in the reader's language in a mail.
    Word(&'static str),
    /// Two decimals; empty when there is no value.
    Number(Option<f64>),
    Count(i64),
    Flag(bool),
}

impl Cell {
    /// The value as every form writes it.
    pub fn show(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Word(word) => word.to_string(),
            Cell::Number(Some(n)) => format!("{n:.2}"),
            Cell::Number(None) => String::new(),
            Cell::Count(n) => n.to_string(),
            Cell::Flag(true) => "yes".to_string(),
            Cell::Flag(false) => "no".to_string(),
        }
    }

    /// The value with its fixed words (`yes`, `no`, [`Cell::Word`]s) as `label` gives them.
    pub fn show_with(&self, label: impl Fn(&'static str) -> &'static str) -> String {
        match self {
            Cell::Word(word) => label(word).to_string(),
            Cell::Flag(flag) => label(if *flag { "yes" } else { "no" }).to_string(),
            other => other.show(),
        }
    }

    /// Whether the value is a number (right-aligned in tables).
    pub fn right_aligned(&self) -> bool {
        matches!(self, Cell::Number(_) | Cell::Count(_))
    }
}

/// A named table: the column names (the JSON field names) and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

fn change_row(what: &'static str, c: &Change) -> Vec<Cell> {
    vec![Cell::Word(what), Cell::Count(c.count as i64), Cell::Count(c.previous as i64), Cell::Count(c.change), Cell::Number(c.change_pct)]
}

/// The report's tables, in the order every form shows them.
pub fn tables(report: &Report) -> Vec<Table> {
    match &report.body {
        Body::Daily { server_count, alert_count, servers, alerts } => vec![
            Table {
                name: "summary",
                columns: &["figure", "count", "previous", "change", "change_pct"],
                rows: vec![change_row("servers", server_count), change_row("alerts", alert_count)],
            },
            Table {
                name: "servers",
                columns: &["server", "paused", "cpu_avg", "memory_avg", "alerts"],
                rows: servers
                    .iter()
                    .map(|s| {
                        vec![
                            text(&s.server),
                            Cell::Flag(s.paused),
                            Cell::Number(s.cpu_avg),
                            Cell::Number(s.memory_avg),
                            Cell::Count(s.alerts as i64),
                        ]
                    })
                    .collect(),
            },
            Table {
                name: "alerts",
                columns: &["time", "severity", "server", "description", "cpu", "memory", "disk", "network_in_bps", "network_out_bps"],
                rows: alerts
                    .iter()
                    .map(|a| {
                        vec![
                            text(&a.time),
                            Cell::Word(a.severity.as_str()),
                            text(&a.server),
                            text(&a.description),
                            Cell::Number(a.cpu),
                            Cell::Number(a.memory),
                            Cell::Number(a.disk),
                            Cell::Number(a.network_in_bps),
                            Cell::Number(a.network_out_bps),
                        ]
                    })
                    .collect(),
            },
        ],
        Body::Usage { servers } => vec![Table {
            name: "servers",
            columns: &["server", "paused", "cpu_avg", "cpu_max", "memory_avg", "memory_max"],
            rows: servers
                .iter()
                .map(|s| {
                    vec![
                        text(&s.server),
                        Cell::Flag(s.paused),
                        Cell::Number(s.cpu_avg),
                        Cell::Number(s.cpu_max),
                        Cell::Number(s.memory_avg),
                        Cell::Number(s.memory_max),
                    ]
                })
                .collect(),
        }],
        Body::Disk { disks } => vec![Table {
            name: "disks",
            columns: &["server", "paused", "mount", "usage_avg", "usage_last"],
            rows: disks
                .iter()
                .map(|d| {
                    vec![
                        text(&d.server),
                        Cell::Flag(d.paused),
                        text(d.mount.as_deref().unwrap_or_default()),
                        Cell::Number(d.usage_avg),
                        Cell::Number(d.usage_last),
                    ]
                })
                .collect(),
        }],
        Body::App { servers } => vec![Table {
            name: "servers",
            columns: &[
                "server",
                "paused",
                "cpu_system",
                "cpu_user",
                "cpu_steal",
                "cpu_nice",
                "cpu_irq",
                "cpu_softirq",
                "memory",
                "swap",
                "disk_io",
                "disk_read_bps",
                "disk_write_bps",
                "network_in_bps",
                "network_out_bps",
            ],
            rows: servers
                .iter()
                .map(|s| {
                    let mut row = vec![text(&s.server), Cell::Flag(s.paused)];
                    row.extend(
                        [
                            s.cpu_system,
                            s.cpu_user,
                            s.cpu_steal,
                            s.cpu_nice,
                            s.cpu_irq,
                            s.cpu_softirq,
                            s.memory,
                            s.swap,
                            s.disk_io,
                            s.disk_read_bps,
                            s.disk_write_bps,
                            s.network_in_bps,
                            s.network_out_bps,
                        ]
                        .map(Cell::Number),
                    );
                    row
                })
                .collect(),
        }],
    }
}

/// `Daily report (summary) of shop: 2026-03-29T00:00:00+01:00 – 2026-03-30T00:00:00+02:00, Europe/Berlin`.
pub fn title(report: &Report) -> String {
    let period = match report.period {
        super::Period::Daily => "Daily",
        super::Period::Weekly => "Weekly",
        super::Period::Monthly => "Monthly",
    };
    let partial = if report.complete { "" } else { " (period not over yet)" };
    format!("{period} report ({}) of {}: {} – {}, {}{partial}", report.kind, report.project, report.from, report.to, report.timezone)
}

/// How many terminal columns `text` takes: East Asian wide characters (Hangul, CJK) take two.
fn width(text: &str) -> usize {
    text.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 => {
                2
            }
            _ => 1,
        })
        .sum()
}

/// The report as aligned text tables under a title, headed by the JSON field names.
pub fn to_text(report: &Report) -> String {
    to_text_with(report, &title(report), |word| if word == "none" { "(none)" } else { word })
}

/// The report as aligned text tables under `title`, with each table's name, each column's name,
/// the word `none` (a table without rows) and the cells' fixed words ([`Cell::show_with`])
/// shown as `label` gives them: the daily e-mail's plain-text part is in the recipient's
/// language.
pub fn to_text_with(report: &Report, title: &str, label: impl Fn(&'static str) -> &'static str) -> String {
    let mut out = title.to_string();
    out.push('\n');
    for table in tables(report) {
        let shown: Vec<Vec<String>> = table.rows.iter().map(|row| row.iter().map(|cell| cell.show_with(&label)).collect()).collect();
        let columns: Vec<&str> = table.columns.iter().map(|c| label(c)).collect();
        let widths: Vec<usize> =
            (0..columns.len()).map(|i| shown.iter().map(|row| width(&row[i])).chain([width(columns[i])]).max().unwrap_or(0)).collect();
        let _ = write!(out, "\n{}\n", label(table.name));
        let header: Vec<String> =
            columns.iter().zip(&widths).map(|(c, &w)| format!("{c}{}", " ".repeat(w.saturating_sub(width(c))))).collect();
        let _ = writeln!(out, "{}", header.join("  ").trim_end());
        if table.rows.is_empty() {
            let _ = writeln!(out, "{}", label("none"));
        }
        for (row, cells) in shown.iter().zip(&table.rows) {
            let line: Vec<String> = row
                .iter()
                .zip(cells)
                .zip(&widths)
                .map(|((value, cell), &w)| {
                    let pad = " ".repeat(w.saturating_sub(width(value)));
                    if cell.right_aligned() { format!("{pad}{value}") } else { format!("{value}{pad}") }
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
    }
    out
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value.to_string() }
}

/// The report as CSV: a byte-order mark, then each table with its header row; several tables
/// (the daily summary's) are separated by an empty line.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from('\u{feff}');
    for (i, table) in tables(report).iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let header: Vec<String> = table.columns.iter().map(|c| field(c)).collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");
        for row in &table.rows {
            let cells: Vec<String> = row.iter().map(|c| field(&c.show())).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

/// The file name a download of the report gets: `shop-daily-2026-03-29.csv`.
pub fn csv_file_name(report: &Report) -> String {
    format!(
        "{}-{}{}-{}.csv",
        report.project,
        report.period,
        if report.kind == super::Kind::Summary { String::new() } else { format!("-{}", report.kind) },
        report.date
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        assert_eq!(field("web-01"), "web-01");
        assert_eq!(field("웹서버"), "웹서버");
        assert_eq!(field("disk / full, 95%"), "\"disk / full, 95%\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn numbers_have_two_decimals_and_a_dot() {
        assert_eq!(Cell::Number(Some(12.5)).show(), "12.50");
        assert_eq!(Cell::Number(Some(1234567.0)).show(), "1234567.00");
        assert_eq!(Cell::Number(None).show(), "");
    }

    #[test]
    fn hangul_takes_two_columns() {
        assert_eq!(width("web-01"), 6);
        assert_eq!(width("메모리 높음"), 11);
    }
}
