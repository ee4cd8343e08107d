//! `plan --against URL`: read a running serve's objects and firing alerts through its status API,
//! and pick the firing alerts a change would drop (by the engine's own rule, [`LiveInstances`]).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alert::RuleId;
use crate::alert::retire::LiveInstances;
use crate::api::ObjectsDoc;
use crate::config::Config;
use crate::config::diff::{self, Entry, ObjectKey};

/// How long one request may take before the plan gives up on the server.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most alerts the alerts endpoint returns in one answer.
const MAX_ALERTS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("`{0}` is not an http:// or https:// URL")]
    Url(String),
    #[error("could not reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} refused the token ({status}: {message}); check --token or WATCHKEEPER_TOKEN")]
    Unauthorized { url: String, status: StatusCode, message: String },
    #[error("{url} answered 404 ({message}); is the URL a watchkeeper serve's status API, and new enough to serve /api/v1/objects?")]
    NotFound { url: String, message: String },
    #[error("{url} answered {status}: {message}")]
    Status { url: String, status: StatusCode, message: String },
    #[error("{url} did not answer with the expected JSON")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One firing alert as the status API lists it (`/api/v1/projects/{p}/alerts?status=firing`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FiringAlert {
    pub id: i64,
    /// Not in the API's alert view (the project is in the path); filled in by [`fetch`].
    #[serde(default)]
    pub project: String,
    /// `null` for a port monitor on a bare host.
    pub server: Option<String>,
    pub rule: String,
    pub subject: String,
    pub severity: String,
    pub started_at_ms: i64,
    /// RFC 3339 in the project's timezone, for the human output.
    #[serde(default, skip_serializing)]
    pub started_at: Option<String>,
    pub message: String,
}

/// A firing alert the change would resolve, and why (`removed` or `paused`, as the engine says
/// "removed in `<revision>`").
#[derive(Debug, Clone, Serialize)]
pub struct DroppedAlert {
    #[serde(flatten)]
    pub alert: FiringAlert,
    pub reason: &'static str,
}

/// What a running serve reports.
#[derive(Debug)]
pub struct Running {
    /// Its applied revision.
    pub revision: Option<String>,
    /// `None` when the token sees everything; else the projects whose objects were listed.
    pub scope: Option<Vec<String>>,
    pub objects: BTreeMap<ObjectKey, Value>,
    /// Firing alerts of every project in `objects`.
    pub firing: Vec<FiringAlert>,
}

impl Running {
    /// The plan from what runs to `new`: the object diff — within the token's scope when it has
    /// one, so objects it cannot see do not show as added — and the firing alerts it would drop.
    pub fn plan(&self, new: &Config) -> (Vec<Entry>, Vec<DroppedAlert>) {
        let mut after = diff::objects(new);
        if let Some(scope) = &self.scope {
            after.retain(|k, _| k.project.as_ref().is_some_and(|p| scope.contains(p)));
        }
        (diff::diff_objects(&self.objects, &after), dropped_alerts(&self.firing, new))
    }
}

#[derive(Deserialize)]
struct AlertList {
    alerts: Vec<FiringAlert>,
}

/// Read the objects and the firing alerts of the serve at `base` (`http://host:port`).
pub async fn fetch(base: &str, token: &str) -> Result<Running, FetchError> {
    let base = base.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(FetchError::Url(base.to_string()));
    }
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(FetchError::Client)?;
    let doc: ObjectsDoc = get(&client, &format!("{base}/api/v1/objects"), token).await?;
    let objects: BTreeMap<ObjectKey, Value> = doc.objects.into_iter().map(|o| (o.key, o.value)).collect();
    let mut projects: Vec<&str> = objects.keys().filter_map(|k| k.project.as_deref()).collect();
    projects.dedup(); // keys are in project order
    let mut firing = Vec::new();
    for project in projects {
        let url = format!("{base}/api/v1/projects/{project}/alerts?status=firing&limit={MAX_ALERTS}");
        let list: AlertList = get(&client, &url, token).await?;
        firing.extend(list.alerts.into_iter().map(|a| FiringAlert { project: project.to_string(), ..a }));
    }
    Ok(Running { revision: doc.revision, scope: doc.scope, objects, firing })
}

async fn get<T: DeserializeOwned>(client: &reqwest::Client, url: &str, token: &str) -> Result<T, FetchError> {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|source| FetchError::Unreachable { url: url.to_string(), source: source.without_url() })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|source| FetchError::Unreachable { url: url.to_string(), source: source.without_url() })?;
    if !status.is_success() {
        // The API answers errors as `{"error": "…"}`; anything else is shown as a short excerpt.
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect::<String>().trim().to_string());
        let url = url.to_string();
        return Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FetchError::Unauthorized { url, status, message },
            StatusCode::NOT_FOUND => FetchError::NotFound { url, message },
            _ => FetchError::Status { url, status, message },
        });
    }
    serde_json::from_str(&text).map_err(|source| FetchError::NotJson { url: url.to_string(), source })
}

/// The firing alerts whose instances the configuration `new` would retire, oldest first.
pub fn dropped_alerts(firing: &[FiringAlert], new: &Config) -> Vec<DroppedAlert> {
    let live = LiveInstances::of(new);
    let mut out: Vec<DroppedAlert> = firing
        .iter()
        .filter_map(|a| {
            live.retires(&a.project, a.server.as_deref().unwrap_or(""), &RuleId::from_stored(&a.rule), &a.subject)
                .map(|why| DroppedAlert { alert: a.clone(), reason: why.as_str() })
        })
        .collect();
    out.sort_by(|a, b| (&a.alert.project, a.alert.started_at_ms, a.alert.id).cmp(&(&b.alert.project, b.alert.started_at_ms, b.alert.id)));
    out
}
