//! `/api/v1/status`, the project list and one project; the firing-alert counts the other pages share.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::auth::{Access, Role};
use super::params::Params;
use super::{ApiError, ApiState, rfc3339};
use crate::alert::Severity;
use crate::clock::now_ms;
use crate::config::model::Project;
use crate::config::raw::MemberRole;
use crate::lease::SHARDS;
use crate::store::{FiringAlert, RevisionRecord, Store};

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Firing {
    pub warning: i64,
    pub fatal: i64,
}

impl Firing {
    pub(super) fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Warning => self.warning += 1,
            Severity::Fatal => self.fatal += 1,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub projects: usize,
    pub servers: usize,
    pub port_monitors: usize,
    pub down_checks: usize,
    pub alerts_firing: Firing,
}

impl Counts {
    fn add_project(&mut self, p: &Project) {
        self.projects += 1;
        self.servers += p.servers.len();
        self.port_monitors += p.port_monitors.len();
        self.down_checks += p.down_checks.len();
    }
}

/// The firing alerts of one project, or of every project with `None`.
pub async fn firing_alerts(store: &Store, project: Option<&str>) -> Result<Vec<FiringAlert>, ApiError> {
    Ok(store.firing_alerts(project).await?)
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/status

#[derive(Serialize)]
struct Status {
    version: &'static str,
    started_at_ms: i64,
    backend: &'static str,
    /// `ok`; `rejected` when the newest revision seen was rejected, `held` when it removes too
    /// much at once and waits (the applied one runs on in both cases).
    reconcile: &'static str,
    applied: Option<Revision>,
    rejected: Option<Revision>,
    /// The newest revision, when it is held.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<Revision>,
    /// The serve replicas on this database whose heartbeat is within the lease TTL, by id.
    replicas: Vec<Replica>,
    /// The newest revision a live replica runs (the one first applied last on this database);
    /// a replica running an older one is `behind`.
    newest_revision: Option<String>,
    /// For the caller's scope.
    counts: Counts,
}

#[derive(Serialize)]
struct Replica {
    id: String,
    started_ms: i64,
    started: Option<String>,
    heartbeat_ms: i64,
    /// The revision it runs; `null` until it has applied one.
    revision: Option<String>,
    /// Its revision is older than `newest_revision`: it takes no new shards until it has
    /// applied the newer one.
    behind: bool,
    /// How many of the shards it holds a live lease on (on SQLite the one serve holds all).
    shards: usize,
    /// Those leases as `[shard, epoch]` (PostgreSQL; empty on SQLite, where nothing is leased).
    leases: Vec<[i64; 2]>,
}

#[derive(Serialize)]
pub struct Revision {
    pub revision: String,
    pub at_ms: i64,
    pub at: Option<String>,
    /// How many diagnostics it had, and of them errors and warnings (for every caller).
    pub diagnostic_count: usize,
    pub errors: usize,
    pub warnings: usize,
    /// The operator only: diagnostics name files and objects of every project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<serde_json::Value>>,
    /// A held revision: when it is applied unless a newer one replaces it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<String>,
}

/// The applied revision, the last rejected one and a held one, as `access` may see them.
pub struct Revisions {
    pub applied: Option<Revision>,
    pub rejected: Option<Revision>,
    /// The newest revision seen, when it is held for removing too much at once.
    pub held: Option<Revision>,
    /// The newest revision seen was rejected (the applied one runs on).
    pub rejected_last: bool,
}

/// The revisions for `/api/v1/status` and the dashboard's start page: `applied` is the one
/// this replica runs (`running`; none before it has applied one, whatever others on the
/// database applied), the rejected and held ones are the newest of any replica.
pub async fn revisions(store: &Store, running: Option<&str>, access: &Access) -> Result<Revisions, ApiError> {
    let (_, rejected) = store.latest_revisions().await?;
    let applied = match running {
        Some(revision) => store.applied_revision(revision).await?,
        None => None,
    };
    let newest = applied.iter().chain(&rejected).map(|r| r.at_ms).max();
    // A held revision counts while nothing came after it.
    let held = store.latest_held_revision().await?.filter(|h| newest.is_none_or(|at| h.at_ms > at));
    let rejected_last = held.is_none()
        && match (&applied, &rejected) {
            (Some(a), Some(r)) => r.at_ms >= a.at_ms,
            (None, Some(_)) => true,
            _ => false,
        };
    let operator = access.is_operator();
    Ok(Revisions {
        applied: applied.map(|r| Revision::new(r, operator)),
        rejected: rejected.map(|r| Revision::new(r, operator)),
        held: held.map(|r| Revision::new(r, operator)),
        rejected_last,
    })
}

impl Revision {
    fn new(rec: RevisionRecord, operator: bool) -> Revision {
        // Stored as lint's JSON report (`{diagnostics: [...], errors, warnings, files}`); older
        // rows may hold the bare list.
        let list = match rec.diagnostics {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(mut report) => match report.remove("diagnostics") {
                Some(serde_json::Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let count = |severity: &str| list.iter().filter(|d| d["severity"] == severity).count();
        Revision {
            at: rfc3339(rec.at_ms, &jiff::tz::TimeZone::UTC),
            revision: rec.revision,
            at_ms: rec.at_ms,
            diagnostic_count: list.len(),
            errors: count("error"),
            warnings: count("warning"),
            diagnostics: operator.then_some(list),
            held_until: rec.held_until_ms.and_then(|ms| rfc3339(ms, &jiff::tz::TimeZone::UTC)),
            held_until_ms: rec.held_until_ms,
        }
    }
}

pub async fn status(State(state): State<ApiState>, access: Access, params: Params) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let revisions = revisions(&state.store, state.metrics.applied_revision().as_deref(), &access).await?;
    let mut counts = Counts::default();
    let names: Vec<&str> = access.projects().map(|(p, _)| p.name.as_str()).collect();
    for (p, _) in access.projects() {
        counts.add_project(p);
    }
    for alert in firing_alerts(&state.store, None).await? {
        if names.contains(&alert.key.project.as_str()) {
            counts.alerts_firing.add(alert.severity);
        }
    }
    // The live leases, to say what each replica holds (none on SQLite).
    let leases = match state.store.backend() {
        "postgres" => state.store.shard_leases().await?.into_iter().filter(|l| l.live).collect(),
        _ => Vec::new(),
    };
    let live = state.store.live_replicas(now_ms(), state.lease_ttl_ms).await?;
    let skew = state.store.revision_skew(live.iter().filter_map(|r| r.revision.as_deref())).await?;
    let body = Status {
        version: env!("CARGO_PKG_VERSION"),
        started_at_ms: state.started_at_ms,
        backend: state.store.backend(),
        reconcile: if revisions.held.is_some() {
            "held"
        } else if revisions.rejected_last {
            "rejected"
        } else {
            "ok"
        },
        applied: revisions.applied,
        rejected: revisions.rejected,
        held: revisions.held,
        newest_revision: skew.newest().map(str::to_string),
        replicas: live
            .into_iter()
            .map(|r| {
                let leases: Vec<[i64; 2]> =
                    leases.iter().filter(|l| l.owner.as_deref() == Some(&r.id)).map(|l| [i64::from(l.shard), l.epoch]).collect();
                Replica {
                    started: rfc3339(r.started_ms, &jiff::tz::TimeZone::UTC),
                    shards: if state.store.backend() == "sqlite" { SHARDS } else { leases.len() },
                    leases,
                    id: r.id,
                    started_ms: r.started_ms,
                    heartbeat_ms: r.heartbeat_ms,
                    behind: r.revision.as_deref().is_some_and(|v| skew.is_behind(v)),
                    revision: r.revision,
                }
            })
            .collect(),
        counts,
    };
    Ok(Json(serde_json::to_value(body).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects, /api/v1/projects/{p}

#[derive(Serialize)]
pub struct ProjectSummary<'a> {
    pub name: &'a str,
    pub group: Option<&'a str>,
    pub description: Option<&'a str>,
    pub timezone: &'a str,
    /// The caller's role on it.
    pub role: Role,
    pub servers: usize,
    pub port_monitors: usize,
    pub down_checks: usize,
    pub alerts_firing: Firing,
}

impl<'a> ProjectSummary<'a> {
    fn new(p: &'a Project, role: Role, firing: Firing) -> Self {
        ProjectSummary {
            name: &p.name,
            group: p.group.as_deref(),
            description: p.description.as_deref(),
            timezone: &p.timezone,
            role,
            servers: p.servers.len(),
            port_monitors: p.port_monitors.len(),
            down_checks: p.down_checks.len(),
            alerts_firing: firing,
        }
    }
}

/// Every project in scope, by name, with its firing alerts.
pub async fn summaries<'a>(store: &Store, access: &'a Access) -> Result<Vec<ProjectSummary<'a>>, ApiError> {
    let mut firing: HashMap<String, Firing> = HashMap::new();
    for alert in firing_alerts(store, None).await? {
        firing.entry(alert.key.project).or_default().add(alert.severity);
    }
    Ok(access.projects().map(|(p, role)| ProjectSummary::new(p, role, firing.get(&p.name).copied().unwrap_or_default())).collect())
}

pub async fn list(State(state): State<ApiState>, access: Access, params: Params) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let projects = summaries(&state.store, &access).await?;
    Ok(Json(serde_json::json!({ "projects": projects })))
}

#[derive(Serialize)]
struct ProjectDetail<'a> {
    #[serde(flatten)]
    summary: ProjectSummary<'a>,
    group_description: Option<&'a str>,
    members: Vec<MemberView>,
    channels: &'a [String],
    daily_email: bool,
}

/// A person with a role on the project. E-mail and phone only for admins and the operator.
#[derive(Serialize)]
struct MemberView {
    name: String,
    /// `owner` (of the group), `admin` or `user`; the strongest of the group and project roles.
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

fn member_role(role: MemberRole) -> Role {
    match role {
        MemberRole::Admin => Role::Admin,
        MemberRole::User => Role::User,
    }
}

pub async fn detail(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let (p, role) = access.project(&project)?;
    let mut firing = Firing::default();
    for alert in firing_alerts(&state.store, Some(&p.name)).await? {
        firing.add(alert.severity);
    }
    let group = p.group.as_ref().and_then(|g| access.config.groups.get(g));
    // Every person with a role, keyed by e-mail, keeping the strongest role.
    let mut grants: Vec<(&str, Role)> = Vec::new();
    if let Some(g) = group {
        grants.push((&g.owner, Role::Owner));
        grants.extend(g.admins.iter().map(|e| (e.as_str(), Role::Admin)));
        grants.extend(g.users.iter().map(|e| (e.as_str(), Role::User)));
    }
    grants.extend(p.members.iter().map(|m| (m.user.as_str(), member_role(m.role))));
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for (email, r) in grants {
        // Users are keyed by lowercased e-mail (compile does the same).
        let e = roles.entry(email.to_ascii_lowercase()).or_insert(r);
        *e = (*e).max(r);
    }
    let contacts = role.sees_contacts();
    let members = roles
        .into_iter()
        .map(|(key, role)| {
            let user = access.config.users.get(&key);
            MemberView {
                // compile resolves every reference; should one not resolve, its e-mail must
                // still not reach a plain user through the name.
                name: user.map_or_else(|| if contacts { key.clone() } else { "(unknown user)".to_string() }, |u| u.name.clone()),
                role,
                email: if contacts { Some(user.map_or(key, |u| u.email.clone())) } else { None },
                phone: if contacts { user.and_then(|u| u.phone.clone()) } else { None },
            }
        })
        .collect();
    let body = ProjectDetail {
        summary: ProjectSummary::new(p, role, firing),
        group_description: group.and_then(|g| g.description.as_deref()),
        members,
        channels: &p.channels,
        daily_email: p.daily_email,
    };
    Ok(Json(serde_json::to_value(body).unwrap_or_default()))
}
