//! Daily, weekly and monthly reports of a project, computed from the stored samples, rollups
//! and alert history over days that start at 00:00 in the project's timezone — the one
//! computation behind `watchkeeper report`, the reports API and the daily e-mail.
//!
//! - [`build`] — a [`Report`] from the store, for a period and a kind;
//! - [`render`] — the report as tables: text, CSV (RFC 4180, UTF-8 with a byte-order mark);
//! - [`mail`] — the daily report e-mail, queued once per project and day.

pub mod mail;
pub mod render;

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::Serialize;

use crate::config::model::Project;
use crate::config::raw::Severity;
use crate::store::{AlertFilter, AlertRow, PeriodSeries, PeriodStats, Store, StoreError};

/// How many of the day's alerts the daily report lists (the newest).
pub const DAILY_ALERTS: usize = 50;

/// The length of a report's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One day, from 00:00 to the next 00:00 (23 or 25 hours on a DST change).
    Daily,
    /// Seven days from the given date.
    Weekly,
    /// One calendar month from the given date.
    Monthly,
}

words!(Period { Daily => "daily", Weekly => "weekly", Monthly => "monthly" });

/// What a report holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Daily: counts, changes, per-server CPU and memory, the day's alerts. Weekly and monthly:
    /// per-server CPU and memory, average and maximum.
    Summary,
    /// Per server and mount path: disk usage, average and last.
    Disk,
    /// Per server: the CPU split, memory, swap, disk IO, network.
    App,
}

words!(Kind { Summary => "summary", Disk => "disk", App => "app" });

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("project `{project}` has timezone `{timezone}`, which is not a known IANA timezone")]
    Timezone { project: String, timezone: String },
    #[error("`{0}` is not a date: write YYYY-MM-DD")]
    BadDate(String),
    #[error("{date} is in the future (today is {today} in {timezone})")]
    Future { date: Date, today: Date, timezone: String },
    #[error("{0} is out of the supported range of dates")]
    OutOfRange(Date),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, ReportError>;

/// A report, as the API returns it (JSON) and every other form renders it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub project: String,
    pub period: Period,
    pub kind: Kind,
    /// The first day of the period.
    pub date: String,
    pub timezone: String,
    /// The period's start and end (exclusive), in the project's timezone with the offset.
    pub from: String,
    pub to: String,
    /// Whether the period had ended when the report was made.
    pub complete: bool,
    #[serde(flatten)]
    pub body: Body,
}

/// The tables of a report; which one depends on the period and the kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    /// Daily summary.
    Daily {
        server_count: Change,
        alert_count: Change,
        servers: Vec<DailyServer>,
        alerts: Vec<DailyAlert>,
    },
    /// Weekly or monthly summary.
    Usage {
        servers: Vec<UsageServer>,
    },
    Disk {
        disks: Vec<DiskRow>,
    },
    App {
        servers: Vec<AppServer>,
    },
}

/// A count and its change against the period before.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    pub count: u64,
    pub previous: u64,
    /// `count - previous`.
    pub change: i64,
    /// The change in percent of `previous`; none when `previous` is 0.
    pub change_pct: Option<f64>,
}

impl Change {
    fn new(count: u64, previous: u64) -> Change {
        let change = count as i64 - previous as i64;
        let change_pct = (previous > 0).then(|| round2(change as f64 * 100.0 / previous as f64));
        Change { count, previous, change, change_pct }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyServer {
    pub server: String,
    pub paused: bool,
    pub cpu_avg: Option<f64>,
    pub memory_avg: Option<f64>,
    /// Alerts that started on the day.
    pub alerts: u64,
}

/// An alert of the day, with what its server looked like when it fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyAlert {
    pub time: String,
    pub severity: Severity,
    pub server: String,
    pub description: String,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    /// The fullest mount's usage.
    pub disk: Option<f64>,
    /// Summed over interfaces.
    pub network_in_bps: Option<f64>,
    pub network_out_bps: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageServer {
    pub server: String,
    pub paused: bool,
    pub cpu_avg: Option<f64>,
    pub cpu_max: Option<f64>,
    pub memory_avg: Option<f64>,
    pub memory_max: Option<f64>,
}

/// One mount of one server; a server without disk data has one row without a mount.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskRow {
    pub server: String,
    pub paused: bool,
    pub mount: Option<String>,
    pub usage_avg: Option<f64>,
    /// The usage at the end of the period (the newest stored bucket's average).
    pub usage_last: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppServer {
    pub server: String,
    pub paused: bool,
    pub cpu_system: Option<f64>,
    pub cpu_user: Option<f64>,
    pub cpu_steal: Option<f64>,
    pub cpu_nice: Option<f64>,
    pub cpu_irq: Option<f64>,
    pub cpu_softirq: Option<f64>,
    pub memory: Option<f64>,
    pub swap: Option<f64>,
    /// The busiest device's average utilisation, %.
    pub disk_io: Option<f64>,
    /// Summed over devices, bytes/s.
    pub disk_read_bps: Option<f64>,
    pub disk_write_bps: Option<f64>,
    /// Summed over interfaces, bits/s.
    pub network_in_bps: Option<f64>,
    pub network_out_bps: Option<f64>,
}

/// Every figure is rounded to two decimals once, here, so every form shows the same numbers.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<Date> {
    let bad = || ReportError::BadDate(text.to_string());
    if text.len() != 10 {
        return Err(bad());
    }
    text.parse::<Date>().map_err(|_| bad())
}

/// The project's timezone.
pub fn timezone(project: &Project) -> Result<TimeZone> {
    TimeZone::get(&project.timezone)
        .map_err(|_| ReportError::Timezone { project: project.name.clone(), timezone: project.timezone.clone() })
}

/// The first day of the last complete period before `today`: yesterday; the week (Monday to
/// Sunday) before this one; last month.
pub fn last_complete(period: Period, today: Date) -> Result<Date> {
    let out = |_| ReportError::OutOfRange(today);
    match period {
        Period::Daily => today.yesterday().map_err(out),
        Period::Weekly => today.checked_sub((i64::from(today.weekday().to_monday_zero_offset()) + 7).days()).map_err(out),
        Period::Monthly => today.first_of_month().checked_sub(1.month()).map_err(out),
    }
}

/// [start, end) of the period starting on `date`, at 00:00 in `tz`.
pub fn bounds(period: Period, date: Date, tz: &TimeZone) -> Result<(Zoned, Zoned)> {
    let out = |_| ReportError::OutOfRange(date);
    let end = match period {
        Period::Daily => date.tomorrow(),
        Period::Weekly => date.checked_add(7.days()),
        Period::Monthly => date.checked_add(1.month()),
    }
    .map_err(out)?;
    Ok((date.to_zoned(tz.clone()).map_err(out)?, end.to_zoned(tz.clone()).map_err(out)?))
}

/// A time in the project's timezone with its offset: `2026-03-29T03:15:00+02:00`.
pub fn local_time(at_ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(at_ms) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => at_ms.to_string(),
    }
}

fn ms(zoned: &Zoned) -> i64 {
    zoned.timestamp().as_millisecond()
}

/// What to report.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub project: &'a Project,
    pub period: Period,
    pub kind: Kind,
    /// The first day of the period; `None`: the last complete period.
    pub date: Option<Date>,
    /// Now, in epoch milliseconds (to know today and whether the period has ended).
    pub now_ms: i64,
}

/// The servers a report lists: the project's, and any others that reported (since removed from
/// the tree), by name; with whether each is paused.
async fn servers(store: &Store, project: &Project) -> Result<Vec<(String, bool)>> {
    let mut all: BTreeMap<String, bool> = project.servers.values().map(|s| (s.name.clone(), s.paused)).collect();
    for name in store.reported_servers(&project.name).await? {
        all.entry(name).or_insert(false);
    }
    Ok(all.into_iter().collect())
}

/// Compute the report `request` asks for.
pub async fn build(store: &Store, request: Request<'_>) -> Result<Report> {
    let Request { project, period, kind, date, now_ms } = request;
    let tz = timezone(project)?;
    let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(tz.clone());
    let today = now.date();
    let date = match date {
        Some(date) if date > today => {
            return Err(ReportError::Future { date, today, timezone: project.timezone.clone() });
        }
        Some(date) => date,
        None => last_complete(period, today)?,
    };
    let (start, end) = bounds(period, date, &tz)?;
    let (from_ms, to_ms) = (ms(&start), ms(&end));
    let servers = servers(store, project).await?;
    let names: Vec<String> = servers.iter().map(|(name, _)| name.clone()).collect();

    let body = match (period, kind) {
        (Period::Daily, Kind::Summary) => {
            let day_before = date
                .yesterday()
                .map_err(|_| ReportError::OutOfRange(date))?
                .to_zoned(tz.clone())
                .map_err(|_| ReportError::OutOfRange(date))?;
            daily(store, project, &servers, &names, (ms(&day_before), from_ms, to_ms), &tz).await?
        }
        (_, Kind::Summary) => {
            let stats = store.period_stats(&project.name, &names, from_ms, to_ms, &["cpu.usage", "memory.usage"]).await?;
            Body::Usage {
                servers: servers
                    .iter()
                    .zip(&stats)
                    .map(|((server, paused), s)| {
                        let (cpu, memory) = (host(s, "cpu.usage"), host(s, "memory.usage"));
                        UsageServer {
                            server: server.clone(),
                            paused: *paused,
                            cpu_avg: cpu.map(|c| round2(c.avg)),
                            cpu_max: cpu.map(|c| round2(c.max)),
                            memory_avg: memory.map(|m| round2(m.avg)),
                            memory_max: memory.map(|m| round2(m.max)),
                        }
                    })
                    .collect(),
            }
        }
        (_, Kind::Disk) => {
            let stats = store.period_stats(&project.name, &names, from_ms, to_ms, &["disk.usage"]).await?;
            let mut disks = Vec::new();
            for ((server, paused), s) in servers.iter().zip(&stats) {
                let before = disks.len();
                for ((_, mount), series) in s.iter().filter(|((name, _), _)| name == "disk.usage") {
                    disks.push(DiskRow {
                        server: server.clone(),
                        paused: *paused,
                        mount: mount.clone(),
                        usage_avg: Some(round2(series.avg)),
                        usage_last: Some(round2(series.last)),
                    });
                }
                if disks.len() == before {
                    disks.push(DiskRow { server: server.clone(), paused: *paused, mount: None, usage_avg: None, usage_last: None });
                }
            }
            Body::Disk { disks }
        }
        (_, Kind::App) => {
            const APP: &[&str] = &[
                "cpu.system",
                "cpu.user",
                "cpu.steal",
                "cpu.nice",
                "cpu.irq",
                "cpu.softirq",
                "memory.usage",
                "swap.usage",
                "disk.io",
                "disk.read_bps",
                "disk.write_bps",
                "network.in_bps",
                "network.out_bps",
            ];
            let stats = store.period_stats(&project.name, &names, from_ms, to_ms, APP).await?;
            Body::App {
                servers: servers
                    .iter()
                    .zip(&stats)
                    .map(|((server, paused), s)| {
                        let avg = |name: &str| host(s, name).map(|v| round2(v.avg));
                        let sum = |name: &str| subjects(s, name).map(|v| v.avg).reduce(|a, b| a + b).map(round2);
                        AppServer {
                            server: server.clone(),
                            paused: *paused,
                            cpu_system: avg("cpu.system"),
                            cpu_user: avg("cpu.user"),
                            cpu_steal: avg("cpu.steal"),
                            cpu_nice: avg("cpu.nice"),
                            cpu_irq: avg("cpu.irq"),
                            cpu_softirq: avg("cpu.softirq"),
                            memory: avg("memory.usage"),
                            swap: avg("swap.usage"),
                            disk_io: subjects(s, "disk.io").map(|v| v.avg).reduce(f64::max).map(round2),
                            disk_read_bps: sum("disk.read_bps"),
                            disk_write_bps: sum("disk.write_bps"),
                            network_in_bps: sum("network.in_bps"),
                            network_out_bps: sum("network.out_bps"),
                        }
                    })
                    .collect(),
            }
        }
    };
    Ok(Report {
        project: project.name.clone(),
        period,
        kind,
        date: date.to_string(),
        timezone: project.timezone.clone(),
        from: local_time(from_ms, &tz),
        to: local_time(to_ms, &tz),
        complete: now_ms >= to_ms,
        body,
    })
}

/// A host-wide series of a server's period.
fn host<'a>(stats: &'a PeriodStats, name: &str) -> Option<&'a PeriodSeries> {
    stats.get(&(name.to_string(), None))
}

/// Every subject's series of a metric.
fn subjects<'a>(stats: &'a PeriodStats, name: &'a str) -> impl Iterator<Item = &'a PeriodSeries> + 'a {
    stats.iter().filter(move |((n, _), _)| n == name).map(|(_, series)| series)
}

/// The daily summary of [from, to), compared with [before, from).
async fn daily(
    store: &Store,
    project: &Project,
    servers: &[(String, bool)],
    names: &[String],
    (before, from, to): (i64, i64, i64),
    tz: &TimeZone,
) -> Result<Body> {
    const NAMES: &[&str] = &["cpu.usage", "memory.usage"];
    let stats = store.period_stats(&project.name, names, from, to, NAMES).await?;
    let previous = store.period_stats(&project.name, names, before, from, NAMES).await?;
    let reporting = |stats: &[PeriodStats]| stats.iter().filter(|s| !s.is_empty()).count() as u64;

    let filter =
        AlertFilter { project: Some(project.name.clone()), from_ms: Some(before), to_ms: Some(to - 1), limit: 0, ..AlertFilter::default() };
    let alerts: Vec<AlertRow> = store.list_alerts(&filter).await?.into_iter().filter(|a| (before..to).contains(&a.started_at_ms)).collect();
    let (today, yesterday): (Vec<&AlertRow>, Vec<&AlertRow>) = alerts.iter().partition(|a| a.started_at_ms >= from);
    let mut per_server: BTreeMap<&str, u64> = BTreeMap::new();
    for alert in &today {
        *per_server.entry(alert.key.server.as_str()).or_default() += 1;
    }

    Ok(Body::Daily {
        server_count: Change::new(reporting(&stats), reporting(&previous)),
        alert_count: Change::new(today.len() as u64, yesterday.len() as u64),
        servers: servers
            .iter()
            .zip(&stats)
            .map(|((server, paused), s)| DailyServer {
                server: server.clone(),
                paused: *paused,
                cpu_avg: host(s, "cpu.usage").map(|c| round2(c.avg)),
                memory_avg: host(s, "memory.usage").map(|m| round2(m.avg)),
                alerts: per_server.get(server.as_str()).copied().unwrap_or(0),
            })
            .collect(),
        // list_alerts answers newest first.
        alerts: today.iter().take(DAILY_ALERTS).map(|a| daily_alert(a, tz)).collect(),
    })
}

/// An alert line with its snapshot's figures (empty for alerts without one, such as probes').
fn daily_alert(alert: &AlertRow, tz: &TimeZone) -> DailyAlert {
    let snap = &alert.snapshot;
    let number = |path: &[&str]| path.iter().try_fold(snap, |v, key| v.get(key)).and_then(serde_json::Value::as_f64).map(round2);
    let per = |path: &[&str]| -> Vec<f64> {
        path.iter()
            .try_fold(snap, |v, key| v.get(key))
            .and_then(serde_json::Value::as_object)
            .map(|map| map.values().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let sum = |values: Vec<f64>| values.into_iter().reduce(|a, b| a + b).map(round2);
    DailyAlert {
        time: local_time(alert.started_at_ms, tz),
        severity: alert.severity,
        server: alert.key.server.clone(),
        description: alert.message.clone(),
        cpu: number(&["cpu", "usage"]),
        memory: number(&["memory", "usage"]),
        disk: per(&["disk", "usage"]).into_iter().reduce(f64::max).map(round2),
        network_in_bps: sum(per(&["network", "in_bps"])),
        network_out_bps: sum(per(&["network", "out_bps"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn the_last_complete_period_ends_before_today() {
        // 2026-03-31 is a Tuesday.
        assert_eq!(last_complete(Period::Daily, d("2026-03-31")).unwrap(), d("2026-03-30"));
        assert_eq!(last_complete(Period::Weekly, d("2026-03-31")).unwrap(), d("2026-03-23"));
        assert_eq!(last_complete(Period::Weekly, d("2026-03-30")).unwrap(), d("2026-03-23"), "on a Monday, last week");
        assert_eq!(last_complete(Period::Monthly, d("2026-03-31")).unwrap(), d("2026-02-01"));
        assert_eq!(last_complete(Period::Monthly, d("2026-01-01")).unwrap(), d("2025-12-01"));
    }

    #[test]
    fn days_across_a_dst_change_have_23_and_25_hours() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let hours = |period, date| {
            let (start, end) = bounds(period, d(date), &berlin).unwrap();
            (ms(&end) - ms(&start)) / 3_600_000
        };
        assert_eq!(hours(Period::Daily, "2026-03-29"), 23);
        assert_eq!(hours(Period::Daily, "2026-10-25"), 25);
        assert_eq!(hours(Period::Daily, "2026-03-28"), 24);
        assert_eq!(hours(Period::Weekly, "2026-03-23"), 7 * 24 - 1);
        assert_eq!(hours(Period::Monthly, "2026-03-01"), 31 * 24 - 1);
        let (start, end) = bounds(Period::Daily, d("2026-03-29"), &berlin).unwrap();
        assert_eq!(local_time(ms(&start), &berlin), "2026-03-29T00:00:00+01:00");
        assert_eq!(local_time(ms(&end), &berlin), "2026-03-30T00:00:00+02:00");
    }

    #[test]
    fn a_month_runs_one_calendar_month_from_its_date() {
        let (start, end) = bounds(Period::Monthly, d("2026-01-31"), &TimeZone::UTC).unwrap();
        assert_eq!((start.date(), end.date()), (d("2026-01-31"), d("2026-02-28")));
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2026-03-29").unwrap(), d("2026-03-29"));
        for bad in ["2026-3-29", "2026-02-30", "yesterday", "", "2026-03-29T00:00"] {
            assert!(matches!(parse_date(bad), Err(ReportError::BadDate(_))), "{bad}");
        }
    }

    #[test]
    fn change_rates() {
        assert_eq!(Change::new(3, 2), Change { count: 3, previous: 2, change: 1, change_pct: Some(50.0) });
        assert_eq!(Change::new(1, 3).change_pct, Some(-66.67));
        assert_eq!(Change::new(4, 0).change_pct, None);
    }
}
