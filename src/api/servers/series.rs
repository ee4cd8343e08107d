//! `GET /api/v1/projects/{p}/servers/{s}/metrics`: one metric's series at the resolution its
//! range calls for.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::super::auth::Access;
use super::super::params::Params;
use super::super::{ApiError, ApiState};
use super::{Per, per, server_of};
use crate::catalog;
use crate::clock::now_ms;
use crate::store::{Resolution, SeriesPoint};

/// The most points one series answer may have at the resolution asked for (27 h of raw points,
/// 69 days of 5-minute ones); a longer range needs a coarser resolution.
const MAX_POINTS: i64 = 20_000;
/// `?resolution=` words, as [`Resolution`] serializes them.
const RESOLUTIONS: [(&str, Resolution); 3] =
    [("raw", Resolution::Raw), ("five_minutes", Resolution::FiveMinutes), ("hour", Resolution::Hour)];
/// The range without `from` and `to`.
const DEFAULT_RANGE_MS: i64 = 60 * 60_000;

#[derive(Serialize)]
struct Series<'a> {
    name: &'static str,
    /// The mount, device or interface; `null` for a host-wide metric, or for the worst subject
    /// of a per-subject one at each point.
    subject: Option<&'a str>,
    resolution: Resolution,
    resolution_ms: i64,
    from_ms: i64,
    to_ms: i64,
    points: Vec<SeriesPoint>,
}

/// `?name=cpu.usage&subject=/&from=&to=&resolution=raw|five_minutes|hour`: [from, to), by
/// default the last hour; the resolution by default from the range's length.
pub async fn metrics(
    State(state): State<ApiState>,
    access: Access,
    Path((project, server)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["name", "subject", "from", "to", "resolution"])?;
    let (p, _role) = access.project(&project)?;
    let s = server_of(p, &server)?;
    let known = catalog::names;
    let name = match params.str("name") {
        None => return Err(ApiError::bad_request(format!("missing `name`: one of {}", known()))),
        Some(n) => catalog::lookup(n)
            .map(|m| m.name)
            .ok_or_else(|| ApiError::bad_request(format!("invalid `name`: `{n}` is not one of {}", known())))?,
    };
    let subject = params.str("subject");
    let per = per(name);
    if per == Per::Host && subject.is_some() {
        return Err(ApiError::bad_request(format!("invalid `subject`: `{name}` is {}, it has none", per.word())));
    }
    let (from, to) = params.range_ms()?;
    let (from_ms, to_ms) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, now_ms().max(f)),
        (None, Some(t)) => (t.saturating_sub(DEFAULT_RANGE_MS), t),
        (None, None) => {
            let now = now_ms();
            (now - DEFAULT_RANGE_MS, now)
        }
    };
    let range_ms = to_ms.saturating_sub(from_ms);
    let names = RESOLUTIONS.map(|(word, _)| word);
    let (word, resolution) = match params.one_of("resolution", &names)? {
        Some(word) => RESOLUTIONS.into_iter().find(|(w, _)| *w == word).unwrap_or(RESOLUTIONS[0]),
        None => RESOLUTIONS.into_iter().find(|(_, r)| *r == Resolution::for_range(range_ms)).unwrap_or(RESOLUTIONS[0]),
    };
    let step = resolution.step_ms();
    if range_ms / step > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "range too long for `resolution` {word}: {} points, at most {MAX_POINTS}; ask for a coarser resolution or a shorter range",
            range_ms / step
        )));
    }
    let points = state.store.metric_series(&p.name, &s.name, name, subject, from_ms, to_ms, resolution).await?;
    Ok(Json(Series { name, subject, resolution, resolution_ms: step, from_ms, to_ms, points }).into_response())
}
