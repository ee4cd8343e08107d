//! `GET /api/v1/projects/{p}/reports/{daily|weekly|monthly}?date=&kind=&format=json|csv`: a
//! report as JSON, or as a CSV download.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::auth::Access;
use super::params::Params;
use super::{ApiError, ApiState};
use crate::clock::now_ms;
use crate::report::{self, Kind, Period, ReportError, Request};

pub async fn get(
    State(state): State<ApiState>,
    access: Access,
    Path((project, period)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["date", "kind", "format"])?;
    let (p, _role) = access.project(&project)?;
    let period: Period =
        period.parse().map_err(|_| ApiError::not_found(format!("no report `{period}`: there are daily, weekly and monthly reports")))?;
    let kind: Kind = match params.str("kind") {
        None => Kind::Summary,
        Some(word) => {
            word.parse().map_err(|_| ApiError::bad_request(format!("invalid `kind`: `{word}` is not one of summary, disk, app")))?
        }
    };
    let csv = params.one_of("format", &["json", "csv"])? == Some("csv");
    let date = params.str("date").map(report::parse_date).transpose().map_err(|e| ApiError::bad_request(format!("invalid `date`: {e}")))?;
    let built = report::build(&state.store, Request { project: p, period, kind, date, now_ms: now_ms() }).await.map_err(|e| match e {
        ReportError::Store(e) => ApiError::from(e),
        other => ApiError::bad_request(format!("invalid `date`: {other}")),
    })?;
    Ok(if csv {
        let disposition = format!("attachment; filename=\"{}\"", report::render::csv_file_name(&built));
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)],
            report::render::to_csv(&built),
        )
            .into_response()
    } else {
        axum::Json(built).into_response()
    })
}
