//! The routes: a title's ranked list, the feed's metadata, the static feed
//! files, health, the widget and optional pages. Every response carries the
//! privacy headers; nothing reads or sets a cookie and nothing is logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::release::{List, Release, StaticFile, etag_value};

/// Longest request target (path and query) answered; longer ones get 414.
/// A title id is at most a few hundred bytes even percent-encoded.
pub const MAX_URI_BYTES: usize = 2048;

/// The widget, served at [`WIDGET_PATH`] so a page needs nothing from
/// another origin.
pub const WIDGET_JS: &str = include_str!("../assets/also-borrowed.js");

/// Where the widget is served.
pub const WIDGET_PATH: &str = "/also-borrowed.js";

/// Content-Security-Policy of API and feed responses: they are data, never
/// to be run or framed.
pub const CSP_DATA: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Content-Security-Policy of pages (`--pages`) and the widget: scripts,
/// styles, images and fetches from this origin only, nothing else.
pub const CSP_PAGES: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Counters, the only record the server keeps of its requests: no path,
/// title, address or user agent.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered (every status).
    pub requests: AtomicU64,
    /// Lists answered by the API (status 200).
    pub lists: AtomicU64,
    /// Titles asked for that have no list (status 404 from the API).
    pub unknown_titles: AtomicU64,
    /// Feed files answered (status 200).
    pub files: AtomicU64,
    /// Conditional requests answered with 304.
    pub not_modified: AtomicU64,
    /// Malformed requests (400, 404 outside the API, 414).
    pub bad_requests: AtomicU64,
    /// Connections refused because the connection limit was reached.
    pub refused_connections: AtomicU64,
    /// Releases switched to after the first.
    pub reloads: AtomicU64,
    /// New releases that failed to load (the previous one stayed live).
    pub reload_failures: AtomicU64,
}

/// Shared state of all connections: the live release and the counters.
#[derive(Debug)]
pub struct State {
    /// The live release; a request loads it once, so it sees one release.
    pub release: ArcSwap<Release>,
    /// Request and reload counters.
    pub counters: Counters,
    /// Pages served below `/` (path without the leading slash).
    pub(crate) pages: HashMap<String, StaticFile>,
    /// `Cache-Control` of lists, metadata and feed files.
    pub(crate) cache_control: HeaderValue,
}

impl State {
    /// State serving `release`, with `pages` below `/` and a `max-age` of
    /// `max_age_secs` for the data.
    pub(crate) fn new(
        release: Release,
        pages: HashMap<String, StaticFile>,
        max_age_secs: u32,
    ) -> State {
        let cache_control = HeaderValue::from_str(&format!("public, max-age={max_age_secs}"))
            .unwrap_or(HeaderValue::from_static("no-cache"));
        State {
            release: ArcSwap::from_pointee(release),
            counters: Counters::default(),
            pages,
            cache_control,
        }
    }
}

/// The router with its layers. `cors_origins` are the origins whose pages
/// may read the API and feed (`*` for any); empty means same origin only.
pub fn router(state: Arc<State>, cors_origins: &[String]) -> Router {
    let mut app = Router::new()
        .route("/api/v1/related/{title}", get(related))
        .route("/api/v1/index", get(index))
        .route("/feed/{*path}", get(feed_file))
        .route("/healthz", get(health))
        .route(WIDGET_PATH, get(widget))
        .fallback(page)
        .with_state(state)
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP_DATA),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("browsing-topics=(), interest-cohort=()"),
        ));
    if !cors_origins.is_empty() {
        let allow = if cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::HEAD])
                .max_age(std::time::Duration::from_secs(86_400)),
        );
    }
    app
}

type AppState = axum::extract::State<Arc<State>>;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(state: &State, status: StatusCode, message: &str) -> Response {
    state.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(JSON)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

const JSON: &str = "application/json";

fn count(state: &State) {
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
}

fn too_long(uri: &Uri) -> bool {
    uri.path().len() + uri.query().map_or(0, str::len) > MAX_URI_BYTES
}

fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| {
            let t = t.trim_ascii();
            t.strip_prefix(b"W/").unwrap_or(t)
        })
        .any(|t| t == etag || t == b"*")
}

/// A cacheable 200 response, or 304 when the client has it already.
fn cached(
    state: &State,
    headers: &HeaderMap,
    etag: &HeaderValue,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, state.cache_control.clone()),
    ];
    if matches(headers, etag) {
        state.counters.not_modified.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.into(),
    )
        .into_response()
}

/// The `limit` query parameter: absent means the feed's `max_related`;
/// larger values are cut to it; 0 or anything but digits is an error.
fn parse_limit(query: Option<&str>, max: usize) -> Result<usize, &'static str> {
    let mut limit = max;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "limit" {
            continue;
        }
        if value.is_empty() || value.len() > 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("limit must be a whole number from 1 to the feed's max_related");
        }
        match value.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err("limit must be a whole number from 1 to the feed's max_related");
            }
            Ok(n) => limit = n.min(max),
        }
    }
    Ok(limit)
}

/// `GET /api/v1/related/{title}?limit=N`: the title's related titles, best
/// first, exactly as the feed has them; 404 with an empty list when the
/// feed has none.
async fn related(axum::extract::State(state): AppState, request: Request) -> Response {
    count(&state);
    let uri = request.uri();
    if too_long(uri) {
        return error(&state, StatusCode::URI_TOO_LONG, "request target too long");
    }
    // The raw segment, decoded here rather than by the router so that
    // invalid UTF-8 gets one clear answer.
    let raw = uri.path().strip_prefix("/api/v1/related/").unwrap_or("");
    let Ok(title) = percent_decode_str(raw).decode_utf8() else {
        return error(
            &state,
            StatusCode::BAD_REQUEST,
            "title is not valid UTF-8 once percent-decoded",
        );
    };
    let release = state.release.load();
    let max = release.feed.index().max_related as usize;
    let limit = match parse_limit(uri.query(), max) {
        Ok(n) => n,
        Err(message) => return error(&state, StatusCode::BAD_REQUEST, message),
    };
    // The whole list was serialized when the release was loaded; a limit
    // below its length cuts it here.
    let (body, etag) = match release.lists.get(title.as_ref()) {
        Some(whole) if limit >= whole.len => (whole.body.clone(), release.lists_etag.clone()),
        Some(_) => {
            let list = List {
                title: &title,
                related: release.feed.similar(&title, limit),
            };
            (
                serde_json::to_vec(&list).unwrap_or_default().into(),
                etag_value(&format!("\"{}-{limit}\"", release.id)),
            )
        }
        None => {
            state
                .counters
                .unknown_titles
                .fetch_add(1, Ordering::Relaxed);
            let body = serde_json::to_vec(&List {
                title: &title,
                related: &[],
            })
            .unwrap_or_default();
            return (
                StatusCode::NOT_FOUND,
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(JSON)),
                    (header::CACHE_CONTROL, state.cache_control.clone()),
                ],
                body,
            )
                .into_response();
        }
    };
    state.counters.lists.fetch_add(1, Ordering::Relaxed);
    cached(&state, request.headers(), &etag, JSON, body)
}

#[derive(Serialize)]
struct IndexBody<'a> {
    #[serde(flatten)]
    index: &'a alsoborrowed_feed::FeedIndex,
    titles: usize,
    release: &'a str,
}

/// `GET /api/v1/index`: the feed's index, the number of titles with a list
/// and the release's content hash.
async fn index(axum::extract::State(state): AppState, request: Request) -> Response {
    count(&state);
    let release = state.release.load();
    let body = serde_json::to_vec(&IndexBody {
        index: release.feed.index(),
        titles: release.feed.len(),
        release: &release.id,
    })
    .unwrap_or_default();
    let etag = etag_value(&format!("\"{}\"", release.id));
    cached(&state, request.headers(), &etag, JSON, body)
}

/// `GET /feed/...`: a file of the live feed, from memory.
async fn feed_file(axum::extract::State(state): AppState, request: Request) -> Response {
    count(&state);
    let uri = request.uri();
    if too_long(uri) {
        return error(&state, StatusCode::URI_TOO_LONG, "request target too long");
    }
    let raw = uri.path().strip_prefix("/feed/").unwrap_or("");
    let Ok(path) = percent_decode_str(raw).decode_utf8() else {
        return error(&state, StatusCode::NOT_FOUND, "no such file");
    };
    let release = state.release.load();
    match release.files.get(path.as_ref()) {
        Some(file) => {
            state.counters.files.fetch_add(1, Ordering::Relaxed);
            cached(
                &state,
                request.headers(),
                &file.etag,
                JSON,
                file.body.clone(),
            )
        }
        // A title without a list has no file (layout `titles`): 404 is the
        // feed's "nothing to recommend".
        None => error(&state, StatusCode::NOT_FOUND, "no such file"),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    release: &'a str,
    updated: &'a str,
    titles: usize,
    requests: u64,
    lists: u64,
    unknown_titles: u64,
    files: u64,
    not_modified: u64,
    bad_requests: u64,
    refused_connections: u64,
    reloads: u64,
    reload_failures: u64,
}

/// `GET /healthz`: the live release and the counters; never cached.
async fn health(axum::extract::State(state): AppState) -> Response {
    count(&state);
    let release = state.release.load();
    let c = &state.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let body = serde_json::to_vec(&Health {
        status: "ok",
        release: &release.id,
        updated: &release.feed.index().updated,
        titles: release.feed.len(),
        requests: get(&c.requests),
        lists: get(&c.lists),
        unknown_titles: get(&c.unknown_titles),
        files: get(&c.files),
        not_modified: get(&c.not_modified),
        bad_requests: get(&c.bad_requests),
        refused_connections: get(&c.refused_connections),
        reloads: get(&c.reloads),
        reload_failures: get(&c.reload_failures),
    })
    .unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(JSON)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn page_csp() -> (HeaderName, HeaderValue) {
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP_PAGES),
    )
}

/// `GET /also-borrowed.js`: the catalogue widget.
async fn widget(axum::extract::State(state): AppState, request: Request) -> Response {
    count(&state);
    let mut response = cached(
        &state,
        request.headers(),
        &HeaderValue::from_static(concat!("\"widget-", env!("CARGO_PKG_VERSION"), "\"")),
        "text/javascript; charset=utf-8",
        WIDGET_JS,
    );
    let (name, value) = page_csp();
    response.headers_mut().insert(name, value);
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => JSON,
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Anything else: a page from `--pages` (`/` is `index.html`), or 404.
async fn page(axum::extract::State(state): AppState, request: Request) -> Response {
    count(&state);
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    if too_long(uri) {
        return error(&state, StatusCode::URI_TOO_LONG, "request target too long");
    }
    if method != Method::GET && method != Method::HEAD {
        return error(&state, StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    }
    let raw = uri.path().trim_start_matches('/');
    let path = match percent_decode_str(raw).decode_utf8() {
        Ok(p) if p.is_empty() => "index.html".to_owned(),
        Ok(p) => p.into_owned(),
        Err(_) => return error(&state, StatusCode::NOT_FOUND, "not found"),
    };
    match state.pages.get(&path) {
        Some(file) => {
            let mut response = cached(
                &state,
                headers,
                &file.etag,
                content_type(&path),
                file.body.clone(),
            );
            let (name, value) = page_csp();
            response.headers_mut().insert(name, value);
            response
        }
        None => error(&state, StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 20), Ok(20));
        assert_eq!(parse_limit(Some("limit=5"), 20), Ok(5));
        assert_eq!(parse_limit(Some("x=1&limit=50"), 20), Ok(20));
        assert_eq!(parse_limit(Some("other"), 20), Ok(20));
        for bad in [
            "limit=0",
            "limit=",
            "limit=-1",
            "limit=1e3",
            "limit=9999999999",
        ] {
            assert!(parse_limit(Some(bad), 20).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_match() {
        let mut h = HeaderMap::new();
        let tag = |t: &'static str| HeaderValue::from_static(t);
        assert!(!matches(&h, &tag("\"a\"")));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"b\", W/\"a\""),
        );
        assert!(matches(&h, &tag("\"a\"")));
        assert!(!matches(&h, &tag("\"c\"")));
    }
}
