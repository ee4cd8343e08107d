//! `GET /api/v1/projects/{p}/servers`: the server list, filtered, sorted and paged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::super::auth::Access;
use super::super::params::Params;
use super::super::projects::{Firing, firing_alerts};
use super::super::{ApiError, ApiState, project_tz};
use super::{Columns, ServerState, ServerView, desc};
use crate::clock::now_ms;
use crate::collect::live::ServerLive;
use crate::config::model::{Project, Server};

/// The answer of `…/servers`, serialized straight from the rows: with 10 000 servers, building
/// a `serde_json::Value` first (and freeing it again) took most of the request's time.
#[derive(Serialize)]
struct ServerList<'a> {
    /// Servers matching the filters, of which this page is `offset..offset + limit`.
    total: usize,
    offset: usize,
    limit: usize,
    servers: Vec<ServerView<'a>>,
}

/// About the JSON of one row with every column, to size the answer's buffer once.
const ROW_BYTES: usize = 1_024;

/// `body` as JSON in a buffer of `size_hint` bytes: growing one from empty to a page of rows
/// copied it a dozen times over.
fn json_response(body: &impl Serialize, size_hint: usize) -> Response {
    let mut buf = Vec::with_capacity(size_hint.max(128));
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], buf).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: the answer could not be written: {e}"))
            .into_response(),
    }
}

const DEFAULT_LIMIT: i64 = 1_000;
const MAX_LIMIT: i64 = 10_000;

/// Firing alerts per server of `project`.
async fn firing_by_server(state: &ApiState, project: &str) -> Result<HashMap<String, Firing>, ApiError> {
    let mut firing: HashMap<String, Firing> = HashMap::new();
    for alert in firing_alerts(&state.store, Some(project)).await? {
        if !alert.key.server.is_empty() {
            firing.entry(alert.key.server).or_default().add(alert.severity);
        }
    }
    Ok(firing)
}

/// Does `q` (lowercase) occur in the server's name or configured addresses?
fn matches_configured(s: &Server, q: &str) -> bool {
    s.name.to_lowercase().contains(q) || s.host.to_lowercase().contains(q) || s.private_ip.is_some_and(|ip| ip.to_string().contains(q))
}

/// How the server list can be sorted: by name, worst state first, or a column largest first.
pub const SORTS: &[&str] = &["name", "state", "cpu", "memory", "disk", "network"];

/// What a page of the server list shows: the filters, the order and the window.
#[derive(Debug, Clone, Default)]
pub struct ServerQuery {
    /// Only servers with this tag.
    pub tag: Option<String>,
    /// Only servers whose name or address (configured, or reported by the agent) holds this,
    /// case-insensitively.
    pub q: Option<String>,
    /// One of [`SORTS`]; `name` when empty.
    pub sort: &'static str,
    pub offset: usize,
    pub limit: usize,
}

/// A page of the server list: the servers matching the query, and what each row shows.
pub struct ServerPage<'a> {
    /// Servers matching the filters, of which this page is `offset..offset + limit`.
    pub total: usize,
    rows: Vec<Row<'a>>,
}

/// A server of the page with what its row is made of: its firing alerts, its newest report
/// and the columns computed from that.
struct Row<'a> {
    server: &'a Server,
    firing: Firing,
    live: Option<Arc<ServerLive>>,
    columns: Option<Columns>,
}

impl ServerPage<'_> {
    /// The page's rows, with the report times in `tz`.
    pub fn views(&self, tz: &jiff::tz::TimeZone) -> Vec<ServerView<'_>> {
        let now = now_ms();
        self.rows.iter().map(|r| ServerView::new(r.server, r.firing, r.live.as_deref(), r.columns.as_ref(), now, tz)).collect()
    }
}

/// The servers of `p` that `query` asks for. Numbers sort largest first with servers lacking
/// the value last (`disk` by the fullest mount, `network` by the whole machine); ties keep name
/// order.
///
/// Most requests show a page of a long list, so reports are read and columns computed for the
/// page only, unless a search or a sort needs them for every server.
pub async fn server_page<'a>(state: &ApiState, p: &'a Project, query: &ServerQuery) -> Result<ServerPage<'a>, ApiError> {
    let (tag, sort, offset, limit) = (query.tag.as_deref(), query.sort, query.offset, query.limit);
    let q = query.q.as_deref().map(str::to_lowercase);
    let firing = firing_by_server(state, &p.name).await?;
    let firing_of = |s: &Server| firing.get(&s.name).copied().unwrap_or_default();
    let live_of = |s: &Server| state.live.get(&p.name, &s.name);
    let matching = p.servers.values().filter(|s| tag.is_none_or(|t| s.tags.iter().any(|x| x == t))).filter(|s| {
        q.as_deref().is_none_or(|q| {
            matches_configured(s, q) || live_of(s).is_some_and(|l| l.report.facts.ips.iter().any(|ip| ip.to_string().contains(q)))
        })
    });
    let key: Option<fn(&Columns) -> Option<f64>> = match sort {
        "cpu" => Some(|c| c.cpu),
        "memory" => Some(|c| c.memory),
        "disk" => Some(|c| c.disk.max),
        "network" => Some(|c| c.network.all),
        _ => None,
    };
    // The map is ordered by name already; stable sorts keep names in order among equals. In
    // name order nothing is collected but the page.
    let (total, page): (usize, Vec<&Server>) = if let Some(key) = key {
        let mut keyed: Vec<(Option<f64>, &Server)> = matching.map(|s| (live_of(s).and_then(|l| key(&l.columns)), s)).collect();
        keyed.sort_by(|a, b| desc(a.0, b.0));
        (keyed.len(), keyed.into_iter().skip(offset).take(limit).map(|(_, s)| s).collect())
    } else if sort == "state" {
        let mut all: Vec<&Server> = matching.collect();
        all.sort_by_cached_key(|s| ServerState::of(s, firing_of(s)));
        (all.len(), all.into_iter().skip(offset).take(limit).collect())
    } else if tag.is_none() && q.is_none() {
        (p.servers.len(), p.servers.values().skip(offset).take(limit).collect())
    } else {
        let mut total = 0;
        let mut page = Vec::new();
        for s in matching {
            if total >= offset && page.len() < limit {
                page.push(s);
            }
            total += 1;
        }
        (total, page)
    };
    // With the newest report and the columns of each.
    let rows = page
        .into_iter()
        .map(|s| {
            let live = live_of(s);
            let columns = live.as_ref().map(|l| l.columns);
            Row { server: s, firing: firing_of(s), live, columns }
        })
        .collect();
    Ok(ServerPage { total, rows })
}

/// `?tag=&q=&sort=name|state|cpu|memory|disk|network&limit=&offset=`: [`server_page`], as
/// JSON. `q` matches the name, the configured addresses and the addresses the agent reported.
pub async fn list(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["tag", "q", "sort", "limit", "offset"])?;
    let (p, _role) = access.project(&project)?;
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0);
    let query = ServerQuery {
        tag: params.str("tag").map(String::from),
        q: params.str("q").map(String::from),
        sort: params.one_of("sort", SORTS)?.unwrap_or("name"),
        limit: params.int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT) as usize,
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
    };
    let page = server_page(&state, p, &query).await?;
    let servers = page.views(&project_tz(&p.timezone));
    // Serialized here, while the rows can still borrow from the configuration and the reports.
    let (offset, limit) = (query.offset, query.limit);
    Ok(json_response(&ServerList { total: page.total, offset, limit, servers }, ROW_BYTES * page.rows.len()))
}
