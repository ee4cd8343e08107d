//! `/api/v1/objects`: the applied configuration as keyed objects, the form `plan --against`
//! diffs with a local tree ([`crate::config::diff::objects`], so both sides come from one function).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::auth::Access;
use super::params::Params;
use super::{ApiError, ApiState};
use crate::config::diff::{self, Object};

/// The answer of `GET /api/v1/objects`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectsDoc {
    /// The revision this replica runs, which the objects are of; `null` before it applied one.
    pub revision: Option<String>,
    /// `null` for the operator token: every object, shared ones included. For a user token, the
    /// projects whose objects are listed: those it has admin (or owner) rights on, since objects
    /// carry contact details (member e-mails, monitor `notify` lists). Shared objects (users,
    /// groups, channels, shared policies) are the operator's only.
    pub scope: Option<Vec<String>>,
    /// In identity order (project, kind, name).
    pub objects: Vec<Object>,
}

pub async fn list(State(state): State<ApiState>, access: Access, params: Params) -> Result<Json<ObjectsDoc>, ApiError> {
    params.allow(&[])?;
    let scope: Option<Vec<String>> =
        (!access.is_operator()).then(|| access.projects().filter(|(_, role)| role.sees_contacts()).map(|(p, _)| p.name.clone()).collect());
    let visible = |project: &Option<String>| match (&scope, project) {
        (None, _) => true,
        (Some(names), Some(p)) => names.contains(p),
        (Some(_), None) => false,
    };
    let objects = diff::objects(&access.config)
        .into_iter()
        .filter(|(key, _)| visible(&key.project))
        .map(|(key, value)| Object { key, value })
        .collect();
    // The revision these objects come from: the one this replica runs.
    Ok(Json(ObjectsDoc { revision: state.metrics.applied_revision(), scope, objects }))
}
