//! The static part of the demo site: the HTML home page, its assets, the tagged pages
//! (for purge-by-tag) and the 404 answer. Bodies and validators are built once at start.

use std::io;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::conditional::{Validators, header_value, http_date, strong_etag};

const INDEX_HTML: &str = include_str!("site/index.html");
const APP_CSS: &str = include_str!("site/app.css");
const APP_JS: &str = include_str!("site/app.js");
const LOGO_SVG: &str = include_str!("site/logo.svg");

const PAGE_CACHE: &str = "public, max-age=60";
const ASSET_CACHE: &str = "public, max-age=86400, immutable";
const TAGGED_CACHE: &str = "public, max-age=300";
const HTML: &str = "text/html; charset=utf-8";

/// Longest accepted `{name}` in `/tagged/{name}`.
const MAX_TAG_LEN: usize = 64;

/// One static resource with its validators.
pub(crate) struct Page {
    body: Bytes,
    content_type: &'static str,
    cache_control: &'static str,
    etag: HeaderValue,
}

impl Page {
    fn new(
        body: &'static str,
        content_type: &'static str,
        cache: &'static str,
    ) -> io::Result<Self> {
        Ok(Self {
            body: Bytes::from_static(body.as_bytes()),
            content_type,
            cache_control: cache,
            etag: strong_etag(body.as_bytes())?,
        })
    }
}

/// All static pages, plus the site-wide `Last-Modified`.
pub(crate) struct Site {
    index: Page,
    css: Page,
    js: Page,
    logo: Page,
    last_modified: HeaderValue,
    last_modified_time: SystemTime,
}

impl Site {
    pub(crate) fn new(started: SystemTime) -> io::Result<Self> {
        Ok(Self {
            index: Page::new(INDEX_HTML, HTML, PAGE_CACHE)?,
            css: Page::new(APP_CSS, "text/css; charset=utf-8", ASSET_CACHE)?,
            js: Page::new(APP_JS, "text/javascript; charset=utf-8", ASSET_CACHE)?,
            logo: Page::new(LOGO_SVG, "image/svg+xml", ASSET_CACHE)?,
            last_modified: http_date(started)?,
            last_modified_time: started,
        })
    }

    fn validators<'a>(&'a self, etag: &'a HeaderValue, cache: &'static str) -> Validators<'a> {
        Validators {
            etag,
            last_modified: &self.last_modified,
            last_modified_time: self.last_modified_time,
            cache_control: cache,
        }
    }

    /// 200 with the body, or 304 when the request's validators match.
    fn respond(&self, page: &Page, headers: &HeaderMap) -> Response {
        self.respond_body(
            page.body.clone(),
            page.content_type,
            &page.etag,
            page.cache_control,
            headers,
        )
    }

    fn respond_body(
        &self,
        body: Bytes,
        content_type: &'static str,
        etag: &HeaderValue,
        cache: &'static str,
        headers: &HeaderMap,
    ) -> Response {
        let validators = self.validators(etag, cache);
        if validators.not_modified(headers) {
            return validators.not_modified_response();
        }
        let mut res = body.into_response();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        h.insert(ETAG, etag.clone());
        h.insert(LAST_MODIFIED, self.last_modified.clone());
        res
    }
}

/// `GET /`.
pub(crate) async fn index(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let site = &shared.site;
    site.respond(&site.index, &headers)
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(
    State(shared): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let site = &shared.site;
    let page = match file.as_str() {
        "app.css" => &site.css,
        "app.js" => &site.js,
        "logo.svg" => &site.logo,
        _ => return not_found().await,
    };
    site.respond(page, &headers)
}

/// `GET /tagged/{name}`: a small page carrying `Surrogate-Key` and `Cache-Tag`, so that
/// purge-by-tag has something to purge. `name` is 1 to 64 of `[A-Za-z0-9._-]`.
pub(crate) async fn tagged(
    State(shared): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !valid_tag(&name) {
        return (StatusCode::BAD_REQUEST, "invalid tag name\n").into_response();
    }
    let body = format!(
        "<!doctype html>\n<html><head><title>Tagged {name}</title></head>\n\
         <body><h1>Tagged page {name}</h1>\n\
         <p>Served by the Lingjing demo origin with surrogate keys \
         <code>tag-{name}</code> and <code>all</code>.</p></body></html>\n"
    );
    let tag_headers = (
        header_value(format!("tag-{name} all")),
        header_value(format!("tag-{name}")),
        strong_etag(body.as_bytes()),
    );
    let (Ok(surrogate), Ok(cache_tag), Ok(etag)) = tag_headers else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let site = &shared.site;
    let mut res = site.respond_body(Bytes::from(body), HTML, &etag, TAGGED_CACHE, &headers);
    let h = res.headers_mut();
    h.insert(HeaderName::from_static("surrogate-key"), surrogate);
    h.insert(HeaderName::from_static("cache-tag"), cache_tag);
    res
}

fn valid_tag(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TAG_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Anything else: 404 with a short text body.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}
