//! The one page layout, its navigation, and the pages every part of the dashboard shares
//! (sign-in, not found).

use axum::http::StatusCode;
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};

use super::words::Words;
use super::{Signed, page};
use crate::config::model::Project;

/// The top navigation, for every signed-in page: (path, label).
fn nav(w: &Words) -> [(&'static str, &'static str); 2] {
    [("/", w.projects), ("/eye", w.all_servers)]
}

/// A project's own pages, under `/p/{project}`: (path suffix, label).
fn project_nav(w: &Words) -> [(&'static str, &'static str); 6] {
    [
        ("", w.compound_eye),
        ("/servers", w.server_list),
        ("/alerts", w.alerts),
        ("/ports", w.port_monitors),
        ("/availability", w.availability),
        ("/reports", w.reports),
    ]
}

/// Where a page sits, to mark its navigation entries.
pub enum Place<'a> {
    /// A top entry, by path.
    Top(&'static str),
    /// A project's page, by path suffix.
    Project(&'a Project, &'static str),
}

/// A full page in the language of `w`: the header with navigation and sign-out (for a
/// signed-in caller), then `body`.
pub fn layout(w: &Words, title: &str, signed: Option<&Signed>, place: Option<&Place>, body: Markup) -> Markup {
    let top = match place {
        Some(Place::Top(path)) => Some(*path),
        _ => None,
    };
    html! {
        (DOCTYPE)
        html lang=(w.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · watchkeeper" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "watchkeeper" }
                    @if let Some(signed) = signed {
                        nav aria-label=(w.nav_main) {
                            @for (path, label) in nav(w) {
                                a href=(path) aria-current=[(top == Some(path)).then_some("page")] { (label) }
                            }
                        }
                        form.signout method="post" action="/signout" {
                            span.who { (if signed.access.is_operator() { w.operator } else { w.signed_in }) }
                            button type="submit" { (w.sign_out) }
                        }
                    }
                }
                @if let Some(Place::Project(p, current)) = place {
                    nav.project aria-label=(w.nav_project) {
                        strong { (p.name) }
                        @for (suffix, label) in project_nav(w) {
                            a href={ "/p/" (p.name) (suffix) } aria-current=[(*current == suffix).then_some("page")] { (label) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in page, with `error` above the form.
pub fn sign_in(w: &Words, status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        section.signin {
            h1 { (w.sign_in) }
            p { (w.sign_in_hint) }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form method="post" action="/signin" {
                label for="token" { (w.api_token) }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { (w.sign_in) }
            }
        }
    };
    page(status, layout(w, w.sign_in, None, None, body))
}

/// The 404 page: for a path that does not exist, and alike for a project or server outside the
/// caller's scope, so names of other teams' projects cannot be probed.
pub fn not_found(w: &Words, signed: Option<&Signed>) -> Response {
    let body = html! {
        section.notfound {
            h1 { (w.not_found) }
            p { (w.not_found_text) }
            p { a href="/" { (w.back_to_projects) } }
        }
    };
    page(StatusCode::NOT_FOUND, layout(w, w.not_found, signed, None, body))
}

/// The 404 page for a signed-in caller, in their language.
pub fn missing(signed: &Signed) -> Response {
    not_found(signed.w, Some(signed))
}

/// A number with at most one decimal, or `–` when there is none.
pub fn num(value: Option<f64>, unit: &str) -> String {
    match value {
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}{unit}"),
        Some(v) => format!("{v:.1}{unit}"),
        None => "–".to_string(),
    }
}

/// Bits per second in k/M/G.
pub fn bps(value: Option<f64>) -> String {
    match value {
        None => "–".to_string(),
        Some(v) if v >= 1e9 => format!("{:.1} Gb/s", v / 1e9),
        Some(v) if v >= 1e6 => format!("{:.1} Mb/s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} kb/s", v / 1e3),
        Some(v) => format!("{v:.0} b/s"),
    }
}

/// A count (of events, say) in k/M/G, as an axis writes it.
pub fn count(value: f64) -> String {
    match value {
        v if v >= 1e9 => num(Some(v / 1e9), "G"),
        v if v >= 1e6 => num(Some(v / 1e6), "M"),
        v if v >= 1e3 => num(Some(v / 1e3), "k"),
        v => num(Some(v), ""),
    }
}

/// Bytes in KiB/MiB/GiB/TiB.
pub fn bytes(value: Option<u64>) -> String {
    let Some(v) = value else { return "–".to_string() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < units.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{v} B") } else { format!("{x:.1} {}", units[unit]) }
}

/// Epoch ms as `2026-03-05 14:00:00 KST` in `tz`.
pub fn time(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    crate::api::zoned(ms, tz).map(|z| z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(num(Some(12.345), " %"), "12.3 %");
        assert_eq!(num(Some(100.0), "%"), "100%");
        assert_eq!(num(None, "%"), "–");
        assert_eq!(bps(Some(1_500_000.0)), "1.5 Mb/s");
        assert_eq!(bps(Some(999.0)), "999 b/s");
        assert_eq!(bytes(Some(8 * 1024 * 1024 * 1024)), "8.0 GiB");
        assert_eq!(bytes(Some(12)), "12 B");
        assert_eq!(count(2_500.0), "2.5k");
        assert_eq!(count(2e7), "20M");
        assert_eq!(count(0.5), "0.5");
    }
}
