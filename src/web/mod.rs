//! The web dashboard `serve` shows on its own listener, next to the status API: sign-in with an
//! API token, the projects, the compound eye, the server list, the server pages, the alert pages, the port
//! monitors with their disconnect logs, availability timelines and the reports. Read-only with the API's
//! token scopes — every page reads through the same functions of [`crate::api`] the JSON
//! endpoints use — but for one form: an acknowledgement note on a firing alert, made by the
//! API's own function and guarded against other sites' posts ([`Signed::form_allowed`]).
//!
//! Pages speak the reader's language ([`words`]): the signed-in user's `language`, or for the
//! operator token and before sign-in the browser's `Accept-Language`.
//!
//! HTML is rendered here (maud), charts and timelines are SVG drawn here ([`svg`]); the one script
//! (`assets/app.js`) only refreshes the compound eye, shows the numbers on hover, keeps the
//! server list's chosen columns and sort in the browser, and prints. Every
//! answer carries a Content-Security-Policy that allows no inline script.

mod alerts;
mod availability;
mod detail;
mod eye;
mod html;
mod pages;
mod ports;
mod reports;
mod server;
mod servers;
mod session;
mod svg;
mod words;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde::Deserialize;

use crate::api::{self, Access, ApiState};
use crate::clock::now_ms;
pub use session::{Sessions, SignInLimit};
use words::Words;

/// The cookie holding the session id.
const COOKIE: &str = "wk_session";

/// What the dashboard reads: the API's state, and its sessions.
#[derive(Clone)]
pub struct WebState {
    pub api: ApiState,
    pub sessions: Arc<Sessions>,
    pub sign_in_limit: Arc<SignInLimit>,
    /// Send the cookie with `Secure` (the dashboard is reached over https).
    pub secure_cookie: bool,
    /// `--public-url`'s origin (`https://watch.example.com`), which a posted form may come from
    /// besides the address the request names in `Host` (a proxy may rewrite that).
    pub public_origin: Option<String>,
}

impl WebState {
    /// `public_url`: where people reach the dashboard (`--public-url`), if serve was told; an
    /// `https://` address makes the cookie `Secure`.
    pub fn new(api: ApiState, session_ttl: Duration, public_url: Option<&str>) -> WebState {
        let public_origin = public_url.map(origin_of);
        let secure_cookie = public_origin.as_deref().is_some_and(|o| o.starts_with("https://"));
        WebState { api, sessions: Arc::new(Sessions::new(session_ttl)), sign_in_limit: Arc::default(), secure_cookie, public_origin }
    }
}

/// The origin of a URL as browsers write it in `Origin`: scheme and authority, lowercase, no
/// path (`HTTPS://Watch.example.com/dash/` → `https://watch.example.com`).
fn origin_of(url: &str) -> String {
    let url = url.trim();
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    url[..end].to_ascii_lowercase()
}

/// The status API's routes and the dashboard's pages on one listener. Unknown paths under
/// `/api/` and `/ingest/` answer the API's JSON 404; others the dashboard's 404 page.
pub fn router(state: WebState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::start))
        .route("/signin", post(sign_in))
        .route("/signout", post(sign_out))
        .route("/eye", get(eye::all))
        .route("/eye/cells", get(eye::all_cells))
        .route("/p/{project}", get(eye::project))
        .route("/p/{project}/cells", get(eye::project_cells))
        .route("/p/{project}/servers", get(servers::list))
        .route("/p/{project}/s/{server}", get(server::page_of))
        .route("/p/{project}/s/{server}/charts", get(server::charts_of))
        .route("/p/{project}/alerts", get(alerts::list))
        .route("/p/{project}/alerts/{id}", get(alerts::page_of))
        .route("/p/{project}/alerts/{id}/acks", post(alerts::acknowledge).layer(DefaultBodyLimit::max(alerts::FORM_BYTES)))
        .route("/p/{project}/ports", get(ports::list))
        .route("/p/{project}/ports/{monitor}", get(ports::monitor))
        .route("/p/{project}/availability", get(availability::page_of))
        .route("/p/{project}/reports", get(reports::page_of))
        .route("/p/{project}/reports.csv", get(reports::csv_of))
        .route("/assets/app.css", get(|| asset("text/css; charset=utf-8", include_str!("assets/app.css"))))
        .route("/assets/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))))
        .fallback(fallback)
        .with_state(state.clone());
    api::routes(state.api).merge(pages).method_not_allowed_fallback(method_not_allowed).layer(middleware::map_response(security_headers))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

fn is_api(uri: &Uri) -> bool {
    uri.path().starts_with("/api/") || uri.path().starts_with("/ingest/")
}

async fn fallback(uri: Uri, Viewer(signed, w): Viewer) -> Response {
    if is_api(&uri) { api::not_found().await.into_response() } else { html::not_found(w, signed.as_ref()) }
}

async fn method_not_allowed(uri: Uri) -> Response {
    if is_api(&uri) { api::method_not_allowed().await.into_response() } else { StatusCode::METHOD_NOT_ALLOWED.into_response() }
}

/// On every answer: no inline script, no framing, no sniffing, no referrer to other sites;
/// pages not cached. (`same-origin` rather than `no-referrer`: under `no-referrer` a browser
/// sends `Origin: null` with the dashboard's own forms, and the origin check could not tell
/// them from a page that hides where it comes from.)
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|id| !id.is_empty())
}

/// A signed-in request: who it is, as the API sees their token now.
pub struct Signed {
    pub access: Access,
    /// The session's form token, for the hidden `csrf` field of the forms a page shows.
    pub csrf: String,
    /// The words of the pages: in the user's language, or for the operator the browser's.
    pub w: &'static Words,
}

impl Signed {
    /// May a form posted with `headers` and the form token `presented` act for this session?
    /// The token must be the session's (compared in constant time: both are hashed, and the
    /// digests compared byte by byte to the end). A browser also names the page's origin in
    /// `Origin`; when it does, that must be this dashboard — the address in `Host`, or
    /// `--public-url`'s — so a page of another site is refused even before its token is looked
    /// at. The `SameSite=Strict` cookie already keeps other sites' posts from carrying the
    /// session; these two checks hold where that does not (an old browser, a sibling subdomain).
    pub fn form_allowed(&self, headers: &HeaderMap, public_origin: Option<&str>, presented: Option<&str>) -> bool {
        form_token_matches(&self.csrf, presented) && same_origin(headers, public_origin)
    }
}

/// Is `presented` the session's form token `expected`? Constant time whatever the inputs.
fn form_token_matches(expected: &str, presented: Option<&str>) -> bool {
    use crate::token::{digest_matches, sha256_hex};
    presented.is_some_and(|p| digest_matches(&sha256_hex(p), &sha256_hex(expected)))
}

/// Whether `Origin`, when a request has one, names this dashboard.
fn same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.to_ascii_lowercase();
    if public_origin == Some(origin.as_str()) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    matches!((origin.split_once("://"), host), (Some(("http" | "https", authority)), Some(host)) if authority == host)
}

/// The signed-in caller, if any, and the words of the page. A session whose token the
/// configuration no longer holds ends here.
pub struct Viewer(pub Option<Signed>, pub &'static Words);

impl FromRequestParts<WebState> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Viewer, Self::Rejection> {
        let browser = words::of_browser(&parts.headers);
        let Some(id) = session_id(&parts.headers) else { return Ok(Viewer(None, browser)) };
        let Some(live) = state.sessions.get(id, now_ms()) else { return Ok(Viewer(None, browser)) };
        match Access::of_digest(&state.api, &live.token_sha256) {
            Some(access) => {
                let w = access.language().map_or(browser, Words::of);
                Ok(Viewer(Some(Signed { access, csrf: live.csrf, w }), w))
            }
            None => {
                state.sessions.end(id);
                Ok(Viewer(None, browser))
            }
        }
    }
}

/// A page that needs a session: without one, the browser is sent to the sign-in page.
impl FromRequestParts<WebState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Signed, Response> {
        let Ok(Viewer(signed, _)) = Viewer::from_request_parts(parts, state).await;
        signed.ok_or_else(|| Redirect::to("/").into_response())
    }
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

/// `POST /signin`: a valid token starts a session; the token itself is not kept, logged or
/// echoed.
async fn sign_in(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let now = now_ms();
    let w = words::of_browser(&headers);
    if let Err(wait) = state.sign_in_limit.attempt(peer.ip(), now) {
        let mut page = html::sign_in(w, StatusCode::TOO_MANY_REQUESTS, Some(&words::fill(w.too_many_attempts, &[&wait])));
        page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return page;
    }
    let digest = crate::token::sha256_hex(form.token.trim());
    if Access::of_digest(&state.api, &digest).is_none() {
        return html::sign_in(w, StatusCode::UNAUTHORIZED, Some(w.unknown_token));
    }
    let id = match state.sessions.start(digest, now) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a session id");
            return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness for a session id").into_response();
        }
    };
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", state.sessions.ttl_secs());
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /signout`: the session ends on the server; the cookie is cleared.
async fn sign_out(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.sessions.end(id);
    }
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A rendered page.
fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; wk_session=abc; b=2"));
        assert_eq!(session_id(&headers), Some("abc"));
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("wk_sessionx=abc; wk_session="));
        assert_eq!(session_id(&headers), None);
    }

    #[test]
    fn a_form_must_come_from_this_dashboard_when_the_browser_says_where_from() {
        let headers = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.insert(name.clone(), HeaderValue::from_static(value));
            }
            h
        };
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(same_origin(&headers(std::slice::from_ref(&host)), None), "no Origin: the form token decides");
        assert!(same_origin(&headers(&[host.clone(), (header::ORIGIN, "http://127.0.0.1:8080")]), None));
        assert!(!same_origin(&headers(&[host.clone(), (header::ORIGIN, "http://evil.example")]), None));
        assert!(!same_origin(&headers(&[host.clone(), (header::ORIGIN, "null")]), None));
        let proxied = headers(&[host, (header::ORIGIN, "https://watch.example.com")]);
        assert!(!same_origin(&proxied, None));
        assert!(same_origin(&proxied, Some(&origin_of("HTTPS://Watch.example.com/dash/"))));

        assert!(form_token_matches("wk_aBc", Some("wk_aBc")));
        assert!(!form_token_matches("wk_aBc", Some("wk_abc")), "case matters");
        assert!(!form_token_matches("wk_aBc", Some("")));
        assert!(!form_token_matches("wk_aBc", None));
    }
}
