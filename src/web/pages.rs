//! The start page: sign-in, or the projects in scope.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::{Signed, Viewer, WebState, page};
use crate::api::{self, ApiError, ProjectSummary, Revision};

/// An error reading the store, as a page.
pub fn failed(e: ApiError, signed: &Signed) -> Response {
    if e.status() == StatusCode::NOT_FOUND {
        return html::not_found(Some(signed));
    }
    let body = html! { section { h1 { "Something went wrong" } p { "The database could not be read; see serve's log." } } };
    page(e.status(), layout("Error", Some(signed), None, body))
}

/// `GET /`: the sign-in page without a session; with one, the projects in scope, grouped by
/// group.
pub async fn start(State(state): State<WebState>, Viewer(signed): Viewer) -> Response {
    let Some(signed) = signed else { return html::sign_in(StatusCode::OK, None) };
    match projects(&state, &signed).await {
        Ok(body) => page(StatusCode::OK, layout("Projects", Some(&signed), Some(&Place::Top("/")), body)),
        Err(e) => failed(e, &signed),
    }
}

async fn projects(state: &WebState, signed: &Signed) -> Result<Markup, ApiError> {
    let revisions = api::revisions(&state.api.store, &signed.access).await?;
    let summaries = api::summaries(&state.api.store, &signed.access).await?;
    let mut groups: BTreeMap<Option<&str>, Vec<&ProjectSummary>> = BTreeMap::new();
    for s in &summaries {
        groups.entry(s.group).or_default().push(s);
    }
    let applied = revisions.applied.as_ref().map(|r| short(&r.revision));
    Ok(html! {
        @if revisions.rejected_last && let Some(rejected) = &revisions.rejected {
            (rejected_banner(rejected))
        }
        h1 { "Projects" }
        p.meta {
            "Applied revision: "
            @match &revisions.applied {
                Some(r) => { code { (short(&r.revision)) } " (" (html::time(r.at_ms, &jiff::tz::TimeZone::UTC)) ")" }
                None => "none yet",
            }
        }
        @if summaries.is_empty() {
            p { "No project is in this token's scope." }
        }
        @for (group, list) in &groups {
            section.group {
                h2 { (group.unwrap_or("Without a group")) }
                div.cards {
                    @for s in list {
                        a.card href={ "/p/" (s.name) } data-project=(s.name) {
                            strong { (s.name) }
                            @if let Some(d) = s.description { span.desc { (d) } }
                            span { (s.servers) " servers" }
                            span.firing {
                                span.sev.fatal title="fatal alerts firing" { "✕ " (s.alerts_firing.fatal) " fatal" }
                                " "
                                span.sev.warning title="warning alerts firing" { "! " (s.alerts_firing.warning) " warning" }
                            }
                            @if let Some(rev) = applied { span.rev { "revision " code { (rev) } } }
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

fn rejected_banner(r: &Revision) -> Markup {
    html! {
        section.banner role="alert" {
            strong { "The newest revision was rejected" }
            " — " code { (short(&r.revision)) } " with " (r.errors) " errors and " (r.warnings) " warnings; the applied revision keeps running."
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
