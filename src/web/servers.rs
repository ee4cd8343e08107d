//! The server list (`/p/{project}/servers`): the columns of `GET …/servers`, filtered by tag,
//! searched by name or address, sorted, 100 to a page — read through the API's own
//! [`api::server_page`], so a project of 10 000 servers sends one page at a time. Which columns
//! show and the sort are the user's choice, kept in the browser by the page's script
//! (`localStorage`); without the script the default columns show.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::pages::failed;
use super::server::bad;
use super::words::{Words, fill};
use super::{Signed, WebState, page};
use crate::api::{self, AllMax, ApiError, ServerQuery, ServerView};
use crate::config::model::Project;
use crate::config::raw::Os;

/// Servers to a page.
const PAGE: usize = 100;

/// The columns a user can show or hide: (key, sort key when the column sorts, shown before the
/// user chooses). The name always shows.
const COLUMNS: &[(&str, Option<&str>, bool)] = &[
    ("state", Some("state"), true),
    ("os", None, true),
    ("ips", None, true),
    ("cpu", Some("cpu"), true),
    ("memory", Some("memory"), true),
    ("disk", Some("disk"), true),
    ("network", Some("network"), true),
    ("vendor", None, false),
    ("ram", None, false),
    ("uptime", None, true),
    ("io", None, false),
    ("iops", None, false),
    ("bps", None, false),
    ("tags", None, true),
];

/// A column's heading.
fn heading(w: &Words, key: &str) -> &'static str {
    match key {
        "state" => w.col_state,
        "os" => w.col_os,
        "ips" => w.col_ips,
        "cpu" => w.col_cpu,
        "memory" => w.col_memory,
        "disk" => w.col_disk,
        "network" => w.col_network,
        "vendor" => w.col_vendor,
        "ram" => w.col_ram,
        "uptime" => w.col_uptime,
        "io" => w.col_io,
        "iops" => w.col_iops,
        "bps" => w.col_bps,
        _ => w.col_tags,
    }
}

/// The page's query: `?tag=&q=&sort=&page=`.
struct ListParams {
    query: ServerQuery,
    /// 1-based.
    page: usize,
}

impl ListParams {
    fn parse(query: &HashMap<String, String>) -> Result<ListParams, String> {
        if let Some(name) = query.keys().find(|k| !["tag", "q", "sort", "page"].contains(&k.as_str())) {
            return Err(format!("unknown query parameter `{name}` (expected tag, q, sort or page)"));
        }
        let text = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let sort = match text("sort") {
            None => "name",
            Some(s) => api::SORTS
                .iter()
                .copied()
                .find(|x| *x == s)
                .ok_or_else(|| format!("invalid `sort`: `{s}` (expected one of {})", api::SORTS.join(", ")))?,
        };
        let page = match text("page") {
            None => 1,
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=1_000_000).contains(p))
                .ok_or_else(|| format!("invalid `page`: `{p}` (expected 1 or more)"))?,
        };
        let query = ServerQuery {
            tag: text("tag").map(String::from),
            q: text("q").map(String::from),
            sort,
            offset: (page - 1) * PAGE,
            limit: PAGE,
        };
        Ok(ListParams { query, page })
    }

    /// This list's address with `sort` and `page` changed.
    fn href(&self, project: &str, sort: &str, page: usize) -> String {
        let mut q = Vec::new();
        if let Some(tag) = &self.query.tag {
            q.push(format!("tag={}", encode(tag)));
        }
        if let Some(text) = &self.query.q {
            q.push(format!("q={}", encode(text)));
        }
        q.push(format!("sort={sort}"));
        if page > 1 {
            q.push(format!("page={page}"));
        }
        format!("/p/{project}/servers?{}", q.join("&"))
    }
}

/// `GET /p/{project}/servers`.
pub async fn list(
    State(state): State<WebState>,
    signed: Signed,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok((p, _)) = signed.access.project(&project) else { return html::missing(&signed) };
    let params = match ListParams::parse(&query) {
        Ok(params) => params,
        Err(message) => return bad(message, &signed),
    };
    match render(&state, signed.w, p, &params).await {
        Ok(body) => page(StatusCode::OK, layout(signed.w, signed.w.server_list, Some(&signed), Some(&Place::Project(p, "/servers")), body)),
        Err(e) => failed(e, &signed),
    }
}

async fn render(state: &WebState, w: &Words, p: &Project, params: &ListParams) -> Result<Markup, ApiError> {
    let listed = api::server_page(&state.api, p, &params.query).await?;
    let rows = listed.views(&api::project_tz(&p.timezone));
    let tags: BTreeSet<&str> = p.servers.values().flat_map(|s| s.tags.iter().map(String::as_str)).collect();
    let (total, first) = (listed.total, params.query.offset + 1);
    let last = params.query.offset + rows.len();
    let pages = total.div_ceil(PAGE).max(1);
    let sort = params.query.sort;
    Ok(html! {
        h1 { (w.server_list) }
        form.filters method="get" action={ "/p/" (p.name) "/servers" } {
            label { (w.tag_label) select name="tag" {
                option value="" { (w.any) }
                @for tag in &tags { option value=(tag) selected[params.query.tag.as_deref() == Some(*tag)] { (tag) } }
            } }
            label { (w.search) input type="search" name="q" value=[params.query.q.as_deref()] placeholder=(w.name_or_ip); }
            input type="hidden" name="sort" value=(sort);
            button type="submit" { (w.filter) }
            @if params.query.tag.is_some() || params.query.q.is_some() {
                " " a href={ "/p/" (p.name) "/servers?sort=" (sort) } { (w.clear) }
            }
        }
        details.columns #columns hidden data-default=(default_columns()) {
            summary { (w.columns) }
            @for (key, _, _) in COLUMNS {
                label { input type="checkbox" data-col=(key); " " (heading(w, key)) }
            }
        }
        p.meta #count {
            @if total == 0 { (w.no_server_matches) } @else { (fill(w.servers_shown, &[&first, &last, &total])) }
        }
        @if total > 0 {
            div.scroll {
                table.servers #servers data-sort=(sort) {
                    thead { tr {
                        th { (sort_link(params, &p.name, "name", w.name)) }
                        @for (key, sorts, shown) in COLUMNS {
                            th data-col=(key) hidden[!shown] {
                                @if let Some(by) = sorts { (sort_link(params, &p.name, by, heading(w, key))) } @else { (heading(w, key)) }
                            }
                        }
                    } }
                    tbody {
                        @for row in &rows {
                            tr data-server=(row.name) data-state=(row.state.as_str()) {
                                td { a href={ "/p/" (p.name) "/s/" (row.name) } { (row.name) } }
                                @for (key, _, shown) in COLUMNS {
                                    td data-col=(key) hidden[!shown] { (cell(w, row, key)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pages aria-label=(w.nav_pages) {
                @if params.page > 1 { a rel="prev" href=(params.href(&p.name, sort, params.page - 1)) { (w.previous) } " " }
                span.meta { (fill(w.page_of, &[&params.page, &pages])) }
                @if params.page < pages { " " a rel="next" href=(params.href(&p.name, sort, params.page + 1)) { (w.next) } }
            }
        }
    })
}

/// A query value in an address: every byte but RFC 3986's unreserved characters as `%XX`.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The columns shown before the user chooses, as the page's script reads them.
fn default_columns() -> String {
    COLUMNS.iter().filter(|c| c.2).map(|c| c.0).collect::<Vec<_>>().join(",")
}

/// A heading that sorts the list by `by` (back to the first page); the current sort is marked.
fn sort_link(params: &ListParams, project: &str, by: &str, label: &str) -> Markup {
    html! { a href=(params.href(project, by, 1)) data-sort=(by) aria-current=[(params.query.sort == by).then_some("true")] { (label) } }
}

fn all_max(v: Option<AllMax>, show: impl Fn(Option<f64>) -> String) -> String {
    match v {
        Some(AllMax { all, max }) if all.is_some() || max.is_some() => format!("{} / {}", show(all), show(max)),
        _ => "–".to_string(),
    }
}

fn cell(w: &Words, row: &ServerView, key: &str) -> Markup {
    let pct = |v: Option<f64>| html::num(v, "");
    let per_second = |v: Option<f64>| v.map_or("–".to_string(), |b| format!("{}/s", html::bytes(Some(b.max(0.0) as u64))));
    match key {
        "state" => html! { span.state data-state=(row.state.as_str()) { (w.word(row.state.as_str())) } },
        "os" => html! { (row.os_name.unwrap_or(match row.os { Os::Linux => "linux", Os::Windows => "windows" })) },
        "ips" => html! {
            @match row.ips.filter(|ips| !ips.is_empty()) {
                Some(ips) => { @for (i, ip) in ips.iter().enumerate() { @if i > 0 { br; } (ip) } }
                None => { (row.host) @if let Some(ip) = row.private_ip { br; (ip) } }
            }
        },
        "cpu" => html! { (pct(row.cpu_percent)) },
        "memory" => html! { (pct(row.memory_percent)) },
        "disk" => html! { (all_max(row.disk_percent, pct)) },
        "network" => html! { (all_max(row.network_bps, html::bps)) },
        "vendor" => html! { (row.cpu_vendor.unwrap_or("–")) },
        "ram" => html! { (html::bytes(row.ram_bytes)) },
        "uptime" => html! { (row.uptime_days.map_or("–".to_string(), |d| d.to_string())) },
        "io" => html! { (all_max(row.disk_io_percent, pct)) },
        "iops" => html! { (all_max(row.disk_iops, |v| html::num(v, ""))) },
        "bps" => html! { (all_max(row.disk_bps, per_second)) },
        "tags" => html! { @for tag in row.tags { span.tag { (tag) } " " } },
        _ => html! {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ListParams, String> {
        ListParams::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn the_query_names_a_page_of_a_known_sort() {
        let p = parse(&[("tag", "web"), ("q", " 10.0 "), ("sort", "cpu"), ("page", "3")]).unwrap();
        assert_eq!((p.query.tag.as_deref(), p.query.q.as_deref(), p.query.sort), (Some("web"), Some("10.0"), "cpu"));
        assert_eq!((p.page, p.query.offset, p.query.limit), (3, 200, PAGE));
        assert_eq!(p.href("shop", "memory", 1), "/p/shop/servers?tag=web&q=10.0&sort=memory");
        let p = parse(&[("q", "a b&c"), ("tag", "")]).unwrap();
        assert_eq!((p.query.tag.as_deref(), p.query.sort, p.page), (None, "name", 1));
        assert_eq!(p.href("shop", "name", 2), "/p/shop/servers?q=a%20b%26c&sort=name&page=2");
        for (pairs, error) in [
            (&[("sort", "ram")][..], "invalid `sort`: `ram`"),
            (&[("page", "0")][..], "invalid `page`: `0`"),
            (&[("page", "two")][..], "invalid `page`: `two`"),
            (&[("limit", "5")][..], "unknown query parameter `limit`"),
        ] {
            let e = parse(pairs).err().unwrap_or_else(|| panic!("{pairs:?} accepted"));
            assert!(e.starts_with(error), "{e}");
        }
    }
}
