//! The start page: sign-in, or the projects in scope.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::words::{Words, fill};
use super::{Signed, Viewer, WebState, page};
use crate::api::{self, ApiError, ProjectSummary, Revision};

/// An error reading the store, as a page.
pub fn failed(e: ApiError, signed: &Signed) -> Response {
    if e.status() == StatusCode::NOT_FOUND {
        return html::missing(signed);
    }
    let w = signed.w;
    let body = html! { section { h1 { (w.went_wrong) } p { (w.db_unreadable) } } };
    page(e.status(), layout(w, w.error, Some(signed), None, body))
}

/// `GET /`: the sign-in page without a session; with one, the projects in scope, grouped by
/// group.
pub async fn start(State(state): State<WebState>, Viewer(signed, w): Viewer) -> Response {
    let Some(signed) = signed else { return html::sign_in(w, StatusCode::OK, None) };
    match projects(&state, &signed).await {
        Ok(body) => page(StatusCode::OK, layout(w, w.projects, Some(&signed), Some(&Place::Top("/")), body)),
        Err(e) => failed(e, &signed),
    }
}

async fn projects(state: &WebState, signed: &Signed) -> Result<Markup, ApiError> {
    let revisions = api::revisions(&state.api.store, state.api.metrics.applied_revision().as_deref(), &signed.access).await?;
    let summaries = api::summaries(&state.api.store, &signed.access).await?;
    let mut groups: BTreeMap<Option<&str>, Vec<&ProjectSummary>> = BTreeMap::new();
    for s in &summaries {
        groups.entry(s.group).or_default().push(s);
    }
    let applied = revisions.applied.as_ref().map(|r| short(&r.revision));
    let w = signed.w;
    Ok(html! {
        @if revisions.rejected_last && let Some(rejected) = &revisions.rejected {
            (rejected_banner(w, rejected))
        }
        h1 { (w.projects) }
        p.meta {
            (w.applied_revision)
            @match &revisions.applied {
                Some(r) => { code { (short(&r.revision)) } " (" (html::time(r.at_ms, &jiff::tz::TimeZone::UTC)) ")" }
                None => (w.none_yet),
            }
        }
        @if summaries.is_empty() {
            p { (w.no_projects) }
        }
        @for (group, list) in &groups {
            section.group {
                h2 { (group.unwrap_or(w.without_group)) }
                div.cards {
                    @for s in list {
                        a.card href={ "/p/" (s.name) } data-project=(s.name) {
                            strong { (s.name) }
                            @if let Some(d) = s.description { span.desc { (d) } }
                            span { (fill(w.n_servers, &[&s.servers])) }
                            span.firing {
                                span.sev.fatal title=(w.fatal_firing) { (fill(w.n_fatal, &[&s.alerts_firing.fatal])) }
                                " "
                                span.sev.warning title=(w.warning_firing) { (fill(w.n_warning, &[&s.alerts_firing.warning])) }
                            }
                            @if let Some(rev) = applied { span.rev { (w.revision) code { (rev) } } }
                        }
                    }
                }
            }
        }
    })
}

fn short(revision: &str) -> &str {
    revision.get(..revision.find(':').map_or(12, |i| i + 13)).unwrap_or(revision)
}

fn rejected_banner(w: &Words, r: &Revision) -> Markup {
    html! {
        section.banner role="alert" {
            strong { (w.rejected) }
            " — " code { (short(&r.revision)) } (fill(w.rejected_counts, &[&r.errors, &r.warnings]))
            @if let Some(list) = &r.diagnostics {
                ul.diagnostics {
                    @for d in list {
                        li {
                            code { (d["file"].as_str().unwrap_or("")) ":" (d["line"]) ":" (d["column"]) }
                            " " (d["severity"].as_str().unwrap_or("")) "[" (d["rule"].as_str().unwrap_or("")) "] "
                            (d["message"].as_str().unwrap_or(""))
                        }
                    }
                }
            }
        }
    }
}
