//! A project's reports page: the daily, weekly or monthly report as tables, with the period,
//! kind and first day to choose, the period before and after, the CSV to download and a print
//! layout. The figures come from [`crate::report`] as the API's and the CLI's do, and the CSV
//! is the same text.
//!
//! `GET /p/{project}/reports?period=daily|weekly|monthly&kind=summary|disk|app&date=YYYY-MM-DD`
//! (defaults: daily, summary, the last complete period); `GET /p/{project}/reports.csv?…` the
//! same report as a CSV download. A monthly page's previous and next links keep the day of the
//! month the user started from in `day=1..31`: a shorter month clamps the date (03-31 → 02-28)
//! but not the day, so stepping on returns to the 31st (01-31), not to the 28th.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::ToSpan;
use jiff::civil::Date;
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::pages::failed;
use super::words::{Words, fill};
use super::{Signed, WebState, page};
use crate::api::ApiError;
use crate::clock::now_ms;
use crate::config::model::Project;
use crate::config::raw::Language;
use crate::report::{self, Kind, Period, Report, ReportError, Request, render};

/// The page's query, checked.
#[derive(Debug)]
struct View {
    period: Period,
    kind: Kind,
    /// `None`: the last complete period.
    date: Option<Date>,
    /// The day of the month monthly periods start on where the month has it (`None`: the date's).
    day: Option<i8>,
}

impl View {
    fn parse(query: &HashMap<String, String>) -> Result<View, String> {
        for name in query.keys() {
            if !["period", "kind", "date", "day"].contains(&name.as_str()) {
                return Err(format!("unknown query parameter `{name}` (expected period, kind, date, day)"));
            }
        }
        let word = |name: &str| query.get(name).map(String::as_str).filter(|w| !w.is_empty());
        let period = match word("period") {
            None => Period::Daily,
            Some(w) => w.parse().map_err(|_| format!("invalid `period`: `{w}` is not one of daily, weekly, monthly"))?,
        };
        let kind = match word("kind") {
            None => Kind::Summary,
            Some(w) => w.parse().map_err(|_| format!("invalid `kind`: `{w}` is not one of summary, disk, app"))?,
        };
        let date = word("date").map(report::parse_date).transpose().map_err(|e| format!("invalid `date`: {e}"))?;
        let day = match word("day") {
            None => None,
            Some(w) => Some(
                w.parse::<i8>()
                    .ok()
                    .filter(|d| (1..=31).contains(d))
                    .ok_or_else(|| format!("invalid `day`: `{w}` is not a day of the month (1 to 31)"))?,
            ),
        };
        Ok(View { period, kind, date, day })
    }
}

/// The link to the report of `period` and `kind` starting on `date`; a monthly one names `day`
/// when the month clamped it (`date` is not on that day).
fn href(project: &str, csv: bool, period: Period, kind: Kind, date: Date, day: i8) -> String {
    let path = if csv { "reports.csv" } else { "reports" };
    let day = if period == Period::Monthly && date.day() != day { format!("&day={day}") } else { String::new() };
    format!("/p/{project}/{path}?period={period}&kind={kind}&date={date}{day}")
}

/// The first day of the period before (`-1`) or after (`1`) the one starting on `date`. A
/// month starts on `day` of the month, or on its last day when it is shorter.
fn step(period: Period, date: Date, day: i8, by: i64) -> Option<Date> {
    match period {
        Period::Daily => date.checked_add(by.days()),
        Period::Weekly => date.checked_add((7 * by).days()),
        Period::Monthly => date.first_of_month().checked_add(by.months()).map(|first| {
            let day = day.min(first.days_in_month());
            first.with().day(day).build().unwrap_or(first)
        }),
    }
    .ok()
}

fn bad(message: String, signed: &Signed, p: &Project) -> Response {
    let w = signed.w;
    let body = html! { section { h1 { (w.bad_request) } p.error role="alert" { (message) } p { a href={ "/p/" (p.name) "/reports" } { (w.back_to_reports) } } } };
    page(StatusCode::BAD_REQUEST, layout(w, w.bad_request, Some(signed), Some(&Place::Project(p, "/reports")), body))
}

/// The project (in the caller's scope) and the report the query asks for, or the page saying
/// why not (another team's project is not found).
/// The day of the month a monthly page keeps comes with them.
async fn build<'s>(
    state: &WebState,
    signed: &'s Signed,
    project: &str,
    query: &HashMap<String, String>,
) -> Result<(&'s Project, Option<i8>, Report), Response> {
    let Ok((p, _)) = signed.access.project(project) else { return Err(html::missing(signed)) };
    let view = View::parse(query).map_err(|message| bad(message, signed, p))?;
    let request = Request { project: p, period: view.period, kind: view.kind, date: view.date, now_ms: now_ms() };
    report::build(&state.api.store, request)
        .await
        .map_err(|e| match e {
            ReportError::Store(e) => failed(ApiError::from(e), signed),
            other => bad(format!("invalid `date`: {other}"), signed, p),
        })
        .map(|built| (p, view.day, built))
}

/// `GET /p/{project}/reports`.
pub async fn page_of(
    State(state): State<WebState>,
    signed: Signed,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match build(&state, &signed, &project, &query).await {
        Ok((p, day, built)) => {
            let w = signed.w;
            page(StatusCode::OK, layout(w, w.reports, Some(&signed), Some(&Place::Project(p, "/reports")), body(w, p, day, &built)))
        }
        Err(response) => response,
    }
}

/// `GET /p/{project}/reports.csv`: the CSV the API and `watchkeeper report --format csv` give.
pub async fn csv_of(
    State(state): State<WebState>,
    signed: Signed,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match build(&state, &signed, &project, &query).await {
        Ok((_, _, built)) => {
            let disposition = format!("attachment; filename=\"{}\"", render::csv_file_name(&built));
            (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)],
                render::to_csv(&built),
            )
                .into_response()
        }
        Err(response) => response,
    }
}

/// A period's name, and its links to the one before and after.
fn period_label(w: &Words, period: Period) -> (&'static str, &'static str, &'static str) {
    match period {
        Period::Daily => (w.daily, w.previous_day, w.next_day),
        Period::Weekly => (w.weekly, w.previous_week, w.next_week),
        Period::Monthly => (w.monthly, w.previous_month, w.next_month),
    }
}

fn kind_label(w: &Words, kind: Kind) -> &'static str {
    match kind {
        Kind::Summary => w.summary,
        Kind::Disk => w.disk,
        Kind::App => w.app_detail,
    }
}

/// A table's or column's heading, or a cell's fixed word: the report's own key in English (as
/// the CSV has it), the mails' Korean words in Korean.
fn heading(w: &Words, key: &'static str) -> &'static str {
    match w.language() {
        Language::En => key,
        Language::Ko => report::mail::heading(Language::Ko, key),
    }
}

fn body(w: &Words, p: &Project, day: Option<i8>, built: &Report) -> Markup {
    let Ok(date) = built.date.parse::<Date>() else { return html! {} };
    let day = day.unwrap_or(date.day());
    let today = jiff::Timestamp::from_millisecond(now_ms())
        .ok()
        .zip(report::timezone(p).ok())
        .map(|(now, tz)| now.to_zoned(tz).date())
        .unwrap_or(date);
    let (period, kind) = (built.period, built.kind);
    let (_, earlier, later) = period_label(w, period);
    let previous = step(period, date, day, -1);
    let next = step(period, date, day, 1).filter(|next| *next <= today);
    html! {
        section.report {
            form.report-controls method="get" action={ "/p/" (p.name) "/reports" } {
                label { (w.period) " " select name="period" {
                    @for each in Period::ALL { option value=(each.as_str()) selected[*each == period] { (period_label(w, *each).0) } }
                } }
                label { (w.kind) " " select name="kind" {
                    @for each in Kind::ALL { option value=(each.as_str()) selected[*each == kind] { (kind_label(w, *each)) } }
                } }
                label { (w.from) " " input type="date" name="date" value=(built.date) max=(today.to_string()); }
                button type="submit" { (w.show) }
            }
            nav.report-nav aria-label=(w.nav_periods) {
                @if let Some(previous) = previous { a rel="prev" href=(href(&p.name, false, period, kind, previous, day)) { (earlier) } }
                @if let Some(next) = next { a rel="next" href=(href(&p.name, false, period, kind, next, day)) { (later) } }
                a.csv href=(href(&p.name, true, period, kind, date, day)) download { (w.export_csv) }
                button.print type="button" data-print { (w.print) }
            }
            h1 { (fill(w.report_title, &[&period_label(w, period).0, &kind_label(w, kind), &p.name])) }
            p.period {
                (built.from) " – " (built.to) " (" (built.timezone) ")"
                @if !built.complete { " · " strong { (w.not_over_yet) } }
            }
            @for table in render::tables(built) {
                h2 { (heading(w, table.name)) }
                table.report data-table=(table.name) {
                    thead { tr { @for column in table.columns { th { (heading(w, column)) } } } }
                    tbody {
                        @if table.rows.is_empty() { tr { td colspan=(table.columns.len()) { (w.none_rows) } } }
                        @for row in &table.rows {
                            tr { @for cell in row { td.num[cell.right_aligned()] { (cell.show_with(|word| heading(w, word))) } } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn periods_step_by_their_length() {
        assert_eq!(step(Period::Daily, d("2026-03-01"), 1, -1), Some(d("2026-02-28")));
        assert_eq!(step(Period::Weekly, d("2026-03-02"), 2, 1), Some(d("2026-03-09")));
        assert_eq!(step(Period::Monthly, d("2026-01-31"), 31, 1), Some(d("2026-02-28")));
        assert_eq!(step(Period::Monthly, d("2026-03-15"), 15, -1), Some(d("2026-02-15")));
    }

    #[test]
    fn months_keep_the_day_they_started_on_through_a_short_month() {
        // Back from 03-31: February clamps to its last day, January has the 31st again.
        let mut date = d("2026-03-31");
        let mut back = Vec::new();
        for _ in 0..3 {
            date = step(Period::Monthly, date, 31, -1).unwrap();
            back.push(date.to_string());
        }
        assert_eq!(back, ["2026-02-28", "2026-01-31", "2025-12-31"]);
        assert_eq!(step(Period::Monthly, d("2026-02-28"), 31, 1), Some(d("2026-03-31")));
        assert_eq!(step(Period::Monthly, d("2024-03-30"), 30, -1), Some(d("2024-02-29")), "a leap year's February");
        assert_eq!(step(Period::Monthly, d("2026-02-28"), 28, -1), Some(d("2026-01-28")), "the 28th stays the 28th");
        // The links carry the day only while the month clamped it.
        assert_eq!(
            href("shop", false, Period::Monthly, Kind::Disk, d("2026-02-28"), 31),
            "/p/shop/reports?period=monthly&kind=disk&date=2026-02-28&day=31"
        );
        assert_eq!(
            href("shop", false, Period::Monthly, Kind::Disk, d("2026-01-31"), 31),
            "/p/shop/reports?period=monthly&kind=disk&date=2026-01-31"
        );
        assert_eq!(
            href("shop", true, Period::Daily, Kind::Summary, d("2026-02-28"), 31),
            "/p/shop/reports.csv?period=daily&kind=summary&date=2026-02-28"
        );
    }

    #[test]
    fn the_query_is_checked() {
        let query = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let view = View::parse(&query(&[("period", "monthly"), ("kind", "disk"), ("date", "2026-03-01")])).unwrap();
        assert_eq!((view.period, view.kind, view.date), (Period::Monthly, Kind::Disk, Some(d("2026-03-01"))));
        assert!(View::parse(&query(&[("period", "yearly")])).unwrap_err().contains("daily, weekly, monthly"));
        assert!(View::parse(&query(&[("date", "03/01/2026")])).unwrap_err().contains("YYYY-MM-DD"));
        assert!(View::parse(&query(&[("sort", "cpu")])).unwrap_err().contains("unknown query parameter"));
        assert_eq!(View::parse(&query(&[("period", "monthly"), ("day", "31")])).unwrap().day, Some(31));
        for bad in ["0", "32", "-1", "x"] {
            assert!(View::parse(&query(&[("day", bad)])).unwrap_err().contains("invalid `day`"), "{bad}");
        }
    }
}
