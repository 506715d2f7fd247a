//! A tenant's buckets and objects: the list of buckets and the form that creates one; a
//! bucket's objects folder by folder (`/` delimits), a page of 100 at a time; upload (at
//! most [`MAX_UPLOAD`] through the console; the AWS CLI for more), download and delete.
//! All through the S3 gateways with the tenant's console key (`crate::s3`), so a session
//! reaches exactly what the tenant's own S3 keys reach.

use askama::Template;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::BytesMut;
use lingjing_model::tenant::ConsoleS3Access;
use serde::Deserialize;

use super::fleet::encode;
use super::{
    Chrome, Posted, Shared, Signed, error_page, failure_page, form_session, render_status,
    signed_in,
};
use crate::format::{When, bytes};
use crate::s3::S3Error;
use crate::session::Session;

/// The largest file the console uploads (the S3 API takes more: `aws s3 cp`).
pub const MAX_UPLOAD: usize = 64 * 1024 * 1024;

/// The tenant's console key, or the page that says why there is none.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer to send, once per request"
)]
async fn access(console: &Shared, session: &Session) -> Result<ConsoleS3Access, Response> {
    let Some(tenant) = session.tenant() else {
        return Err(error_page(
            Some(session),
            StatusCode::FORBIDDEN,
            "buckets belong to tenants: sign in with a tenant's API key to browse its buckets (the operator's view of storage is the Storage page)".into(),
        ));
    };
    let path = format!("/v1/tenants/{}/s3-keys/console", encode(tenant));
    console
        .api
        .call(Method::POST, &session.credential, &path, None)
        .await
        .map_err(|f| failure_page(session, f))
}

#[derive(Template)]
#[template(path = "s3_wait.html")]
struct WaitPage {
    chrome: Chrome,
    /// Where the page reloads to.
    here: String,
}

/// The page for an S3 error: while a new console key is on its way to the gateways, a
/// page that reloads itself; otherwise the error in words.
fn s3_failure(session: &Session, here: &str, e: S3Error) -> Response {
    if e.code == "InvalidAccessKeyId" {
        return render_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &WaitPage {
                chrome: Chrome::new(session, "Getting storage ready", "buckets"),
                here: here.to_owned(),
            },
        );
    }
    let status = match e.status {
        0 => StatusCode::SERVICE_UNAVAILABLE,
        s => StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY),
    };
    error_page(Some(session), status, e.to_string())
}

struct BucketRow {
    name: String,
    created: When,
}

#[derive(Template)]
#[template(path = "buckets.html")]
struct BucketsPage {
    chrome: Chrome,
    buckets: Vec<BucketRow>,
    /// What the new-bucket box holds, and what is wrong with it.
    name: String,
    error: String,
    endpoint: String,
}

async fn buckets_page(
    console: &Shared,
    session: &Session,
    name: String,
    error: String,
    status: StatusCode,
) -> Response {
    let access = match access(console, session).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let buckets = match console.s3.buckets(&access).await {
        Ok(b) => b,
        Err(e) => return s3_failure(session, "/buckets", e),
    };
    render_status(
        status,
        &BucketsPage {
            chrome: Chrome::new(session, "Buckets", "buckets"),
            buckets: buckets
                .into_iter()
                .map(|b| BucketRow {
                    created: When::of(
                        Some(&b.created)
                            .filter(|c| !c.is_empty())
                            .map(|c| c.as_str()),
                    ),
                    name: b.name,
                })
                .collect(),
            name,
            error,
            endpoint: access.gateways.first().cloned().unwrap_or_default(),
        },
    )
}

/// `GET /buckets`.
pub async fn list(State(console): State<Shared>, Signed(session): Signed) -> Response {
    buckets_page(
        &console,
        &session,
        String::new(),
        String::new(),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct NewBucket {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

super::csrf_field!(NewBucket);

/// `POST /buckets`: creates a bucket.
pub async fn create(
    State(console): State<Shared>,
    Posted(session, form): Posted<NewBucket>,
) -> Response {
    let name = form.name.trim().to_owned();
    if let Err(e) = lingjing_model::service::check_bucket_name("name", &name) {
        return buckets_page(
            &console,
            &session,
            name,
            e.message,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let access = match access(&console, &session).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match console.s3.create_bucket(&access, &name).await {
        Ok(()) => Redirect::to(&format!("/buckets/{}", encode(&name))).into_response(),
        Err(e) if e.status == 409 || e.status == 400 => {
            let message = match e.code.as_str() {
                "BucketAlreadyOwnedByYou" => format!("you already have a bucket `{name}`"),
                "BucketAlreadyExists" => format!(
                    "`{name}` is taken (bucket names are shared by every tenant): choose another"
                ),
                _ => e.message,
            };
            buckets_page(&console, &session, name, message, StatusCode::CONFLICT).await
        }
        Err(e) => s3_failure(&session, "/buckets", e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct BucketQuery {
    /// The folder shown (ends in `/`, or empty for the top).
    #[serde(default)]
    prefix: String,
    /// Where this page starts (S3's continuation token).
    #[serde(default)]
    token: Option<String>,
}

struct Crumb {
    name: String,
    prefix: String,
}

struct ObjectRow {
    /// The name below the folder shown.
    name: String,
    key: String,
    size: String,
    modified: When,
}

#[derive(Template)]
#[template(path = "bucket.html")]
struct BucketPage {
    chrome: Chrome,
    bucket: String,
    prefix: String,
    crumbs: Vec<Crumb>,
    /// (name below the folder, its prefix).
    folders: Vec<(String, String)>,
    objects: Vec<ObjectRow>,
    /// The query string of the next page, if any.
    next: Option<String>,
    /// This is not the first page.
    paged: bool,
    max_upload: String,
    error: String,
}

/// The folders above `prefix` (`a/b/` -> `a/`, `a/b/`).
fn crumbs(prefix: &str) -> Vec<Crumb> {
    let mut out = Vec::new();
    let mut at = 0;
    for part in prefix.split_inclusive('/') {
        at += part.len();
        if part.ends_with('/') {
            out.push(Crumb {
                name: part.trim_end_matches('/').to_owned(),
                prefix: prefix[..at].to_owned(),
            });
        }
    }
    out
}

async fn bucket_page(
    console: &Shared,
    session: &Session,
    bucket: &str,
    q: &BucketQuery,
    error: String,
    status: StatusCode,
) -> Response {
    let access = match access(console, session).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let here = format!(
        "/buckets/{}?{}",
        encode(bucket),
        query(&[("prefix", &q.prefix)])
    );
    let page = match console
        .s3
        .objects(&access, bucket, &q.prefix, q.token.as_deref())
        .await
    {
        Ok(p) => p,
        Err(e) => return s3_failure(session, &here, e),
    };
    let below = |s: &str| s.strip_prefix(q.prefix.as_str()).unwrap_or(s).to_owned();
    render_status(
        status,
        &BucketPage {
            chrome: Chrome::new(session, format!("Bucket {bucket}"), "buckets"),
            crumbs: crumbs(&q.prefix),
            folders: page
                .prefixes
                .iter()
                .map(|p| (below(p), p.clone()))
                .collect(),
            objects: page
                .objects
                .iter()
                .map(|o| ObjectRow {
                    name: below(&o.key),
                    key: o.key.clone(),
                    size: bytes(o.size),
                    modified: When::of(Some(o.last_modified.as_str()).filter(|m| !m.is_empty())),
                })
                .collect(),
            next: page
                .next
                .map(|t| query(&[("prefix", &q.prefix), ("token", &t)])),
            paged: q.token.is_some(),
            max_upload: bytes(MAX_UPLOAD as u64),
            bucket: bucket.to_owned(),
            prefix: q.prefix.clone(),
            error,
        },
    )
}

/// `GET /buckets/{bucket}`.
pub async fn show(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(bucket): Path<String>,
    Query(q): Query<BucketQuery>,
) -> Response {
    bucket_page(
        &console,
        &session,
        &bucket,
        &q,
        String::new(),
        StatusCode::OK,
    )
    .await
}

/// The last part of a browser's file name (some send a whole path).
fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// `POST /buckets/{bucket}/upload` (multipart: `csrf` first, then `prefix`, then
/// `file`): the CSRF token is checked before a byte of the file is read.
pub async fn upload(
    State(console): State<Shared>,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if let Err(r) = signed_in(&console, &headers) {
        return r;
    }
    let mut csrf = String::new();
    let mut prefix = String::new();
    let mut checked: Option<Session> = None;
    let mut file: Option<(String, String, BytesMut)> = None;
    let mut held = None;
    let refused = |session: &Session, prefix: &str, message: String, status| {
        let q = BucketQuery {
            prefix: prefix.to_owned(),
            token: None,
        };
        let console = console.clone();
        let session = session.clone();
        let bucket = bucket.clone();
        async move { bucket_page(&console, &session, &bucket, &q, message, status).await }
    };
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let status = e.status();
                return match checked {
                    Some(s) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                        refused(&s, &prefix, too_large(), status).await
                    }
                    _ => (status, format!("the upload did not read: {e}\n")).into_response(),
                };
            }
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.unwrap_or_default(),
            Some("prefix") => prefix = field.text().await.unwrap_or_default(),
            Some("file") => {
                let session = match form_session(&console, &headers, &csrf) {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                // Bounded memory: at most a few uploads are read at once.
                // Held until the file is written to the gateway.
                let Ok(permit) = console.uploads.acquire().await else {
                    return (StatusCode::SERVICE_UNAVAILABLE, "the console is stopping\n")
                        .into_response();
                };
                held = Some(permit);
                let name = base_name(field.file_name().unwrap_or("")).to_owned();
                let content_type = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let mut body = BytesMut::new();
                let mut field = field;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if body.len() + chunk.len() > MAX_UPLOAD {
                                return refused(
                                    &session,
                                    &prefix,
                                    too_large(),
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                )
                                .await;
                            }
                            body.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let status = e.status();
                            return refused(
                                &session,
                                &prefix,
                                if status == StatusCode::PAYLOAD_TOO_LARGE {
                                    too_large()
                                } else {
                                    format!("the upload did not arrive whole: {e}")
                                },
                                status,
                            )
                            .await;
                        }
                    }
                }
                file = Some((name, content_type, body));
                checked = Some(session);
            }
            _ => {}
        }
    }
    let Some(session) = checked else {
        return match form_session(&console, &headers, &csrf) {
            Ok(s) => {
                refused(
                    &s,
                    &prefix,
                    "choose a file to upload".into(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(r) => r,
        };
    };
    let Some((name, content_type, body)) = file.filter(|(n, _, _)| !n.is_empty()) else {
        return refused(
            &session,
            &prefix,
            "choose a file to upload".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let access = match access(&console, &session).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let key = format!("{prefix}{name}");
    let back = format!(
        "/buckets/{}?{}",
        encode(&bucket),
        query(&[("prefix", &prefix)])
    );
    let written = console
        .s3
        .put(&access, &bucket, &key, &content_type, body.freeze())
        .await;
    drop(held);
    match written {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) if e.status == 400 => {
            refused(&session, &prefix, e.to_string(), StatusCode::BAD_REQUEST).await
        }
        Err(e) => s3_failure(&session, &back, e),
    }
}

fn too_large() -> String {
    format!(
        "the file is larger than the console uploads ({}): use `aws s3 cp` against the S3 endpoint for large files",
        bytes(MAX_UPLOAD as u64)
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    #[serde(default)]
    key: String,
}

/// `GET /buckets/{bucket}/download?key=`: the object, always as a download (never shown
/// in the console's origin, whatever its type says).
pub async fn download(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(bucket): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let access = match access(&console, &session).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let here = format!("/buckets/{}", encode(&bucket));
    let resp = match console.s3.get(&access, &bucket, &q.key).await {
        Ok(r) => r,
        Err(e) => return s3_failure(&session, &here, e),
    };
    let upstream = resp.headers().clone();
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    let h = out.headers_mut();
    for name in [header::CONTENT_LENGTH, header::ETAG, header::LAST_MODIFIED] {
        if let Some(v) = upstream.get(&name) {
            h.insert(name, v.clone());
        }
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let file = base_name(&q.key);
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        file.chars()
            .map(
                |c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            )
            .collect::<String>(),
        lingjing_model::sigv4::encode(file, true)
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Whatever the object is, it never runs as a page of the console.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    out
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    prefix: String,
}

super::csrf_field!(DeleteForm);

/// `POST /buckets/{bucket}/delete`: deletes one object.
pub async fn delete(
    State(console): State<Shared>,
    Path(bucket): Path<String>,
    Posted(session, form): Posted<DeleteForm>,
) -> Response {
    let access = match access(&console, &session).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let back = format!(
        "/buckets/{}?{}",
        encode(&bucket),
        query(&[("prefix", &form.prefix)])
    );
    match console.s3.delete(&access, &bucket, &form.key).await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => s3_failure(&session, &back, e),
    }
}

/// A query string of `pairs`, encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    lingjing_model::sigv4::canonical_query(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_above_a_prefix_link_back() {
        let c = crumbs("photos/2026/");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].name.as_str(), c[0].prefix.as_str()),
            ("photos", "photos/")
        );
        assert_eq!(c[1].prefix, "photos/2026/");
        assert!(crumbs("").is_empty());
        assert_eq!(base_name("C:\\Users\\me\\a.txt"), "a.txt");
        assert_eq!(base_name("dir/b.txt"), "b.txt");
    }
}
