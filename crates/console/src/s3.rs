//! The console as an S3 client: a tenant's buckets and objects are read and written
//! through the platform's S3 gateways (path-style, SigV4) with the tenant's console key
//! (`POST /v1/tenants/{id}/s3-keys/console`), so the gateway's own checks decide what a
//! session may touch, exactly as for the AWS CLI. Answers are parsed with `quick-xml`;
//! an S3 error comes back as its code and message.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lingjing_model::sigv4;
use lingjing_model::tenant::ConsoleS3Access;
use quick_xml::Reader;
use quick_xml::events::Event;
use reqwest::Method;

/// How long one call to a gateway may take before the page says so (downloads stream:
/// this bounds their start only).
const TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client the console reaches gateways with.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

/// What went wrong with an S3 call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    /// The HTTP status (0 when no gateway answered).
    pub status: u16,
    /// S3's error code (`NoSuchBucket`, `BucketAlreadyExists`), or `Unreachable`.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A bucket in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// RFC 3339.
    pub created: String,
}

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// RFC 3339.
    pub last_modified: String,
}

/// One page of a bucket's listing under a prefix, folder-style (`/` delimits).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectPage {
    /// The "folders" one level down.
    pub prefixes: Vec<String>,
    pub objects: Vec<Object>,
    /// Where the next page starts (none: this is the last).
    pub next: Option<String>,
}

/// A request to a gateway.
struct Call<'a> {
    method: Method,
    /// Already percent-encoded (`/bucket/key`).
    path: String,
    query: &'a [(&'a str, &'a str)],
    body: Option<Bytes>,
    content_type: Option<&'a str>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Sends `call` to the first gateway of `access` that answers.
    async fn send(
        &self,
        access: &ConsoleS3Access,
        call: Call<'_>,
    ) -> Result<reqwest::Response, S3Error> {
        let payload = match &call.body {
            Some(b) => sigv4::payload_sha256(b),
            None => sigv4::EMPTY_SHA256.to_owned(),
        };
        let mut last = S3Error {
            status: 0,
            code: "Unreachable".into(),
            message: "no S3 gateway is up: object storage is not running (see the operator's Storage page)".into(),
        };
        for host in &access.gateways {
            let signed = sigv4::sign(
                &sigv4::Request {
                    method: call.method.as_str(),
                    host,
                    path: &call.path,
                    query: call.query,
                    payload: &payload,
                },
                (&access.access_key, &access.secret),
                SystemTime::now(),
            );
            let query = sigv4::canonical_query(call.query);
            let url = if query.is_empty() {
                format!("http://{host}{}", call.path)
            } else {
                format!("http://{host}{}?{query}", call.path)
            };
            let mut req = self.http.request(call.method.clone(), url);
            for (name, value) in signed.fields() {
                req = req.header(name, value);
            }
            if let Some(t) = call.content_type {
                req = req.header(reqwest::header::CONTENT_TYPE, t);
            }
            if let Some(b) = &call.body {
                req = req.body(b.clone());
            }
            match tokio::time::timeout(TIMEOUT, req.send()).await {
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => return Err(error_of(resp).await),
                Ok(Err(e)) if e.is_connect() => {
                    last.message = format!("the S3 gateway {host} cannot be reached: {e}");
                }
                Ok(Err(e)) => {
                    return Err(S3Error {
                        status: 502,
                        code: "GatewayError".into(),
                        message: format!("the S3 gateway {host} failed: {e}"),
                    });
                }
                Err(_) => {
                    last.message = format!(
                        "the S3 gateway {host} did not answer within {} s",
                        TIMEOUT.as_secs()
                    );
                }
            }
        }
        Err(last)
    }

    /// The tenant's buckets.
    pub async fn buckets(&self, access: &ConsoleS3Access) -> Result<Vec<Bucket>, S3Error> {
        let resp = self
            .send(access, call(Method::GET, "/".into(), &[]))
            .await?;
        Ok(parse_buckets(&text(resp).await?))
    }

    /// Creates bucket `name`.
    pub async fn create_bucket(&self, access: &ConsoleS3Access, name: &str) -> Result<(), S3Error> {
        let path = format!("/{}", sigv4::encode(name, true));
        self.send(access, call(Method::PUT, path, &[])).await?;
        Ok(())
    }

    /// One page of `bucket` under `prefix`, from `token` on.
    pub async fn objects(
        &self,
        access: &ConsoleS3Access,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<ObjectPage, S3Error> {
        let mut query = vec![
            ("list-type", "2"),
            ("delimiter", "/"),
            ("max-keys", "100"),
            ("prefix", prefix),
        ];
        if let Some(t) = token {
            query.push(("continuation-token", t));
        }
        let path = format!("/{}", sigv4::encode(bucket, true));
        let resp = self.send(access, call(Method::GET, path, &query)).await?;
        Ok(parse_objects(&text(resp).await?))
    }

    /// Writes `key` in `bucket`.
    pub async fn put(
        &self,
        access: &ConsoleS3Access,
        bucket: &str,
        key: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), S3Error> {
        let mut c = call(Method::PUT, object_path(bucket, key), &[]);
        c.body = Some(body);
        c.content_type = Some(content_type);
        self.send(access, c).await?;
        Ok(())
    }

    /// Reads `key` of `bucket`: the gateway's answer, to stream on.
    pub async fn get(
        &self,
        access: &ConsoleS3Access,
        bucket: &str,
        key: &str,
    ) -> Result<reqwest::Response, S3Error> {
        self.send(access, call(Method::GET, object_path(bucket, key), &[]))
            .await
    }

    /// Deletes `key` of `bucket`.
    pub async fn delete(
        &self,
        access: &ConsoleS3Access,
        bucket: &str,
        key: &str,
    ) -> Result<(), S3Error> {
        self.send(access, call(Method::DELETE, object_path(bucket, key), &[]))
            .await?;
        Ok(())
    }
}

fn call<'a>(method: Method, path: String, query: &'a [(&'a str, &'a str)]) -> Call<'a> {
    Call {
        method,
        path,
        query,
        body: None,
        content_type: None,
    }
}

/// `/bucket/key`, encoded as SigV4 wants (`/` in the key kept).
fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "/{}/{}",
        sigv4::encode(bucket, true),
        sigv4::encode(key, false)
    )
}

async fn text(resp: reqwest::Response) -> Result<String, S3Error> {
    resp.text().await.map_err(|e| S3Error {
        status: 502,
        code: "GatewayError".into(),
        message: format!("reading the gateway's answer: {e}"),
    })
}

/// The S3 error in a refusal (its `<Code>` and `<Message>`), or the status alone.
async fn error_of(resp: reqwest::Response) -> S3Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let fields = fields(&body, &["Code", "Message"]);
    let pick = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    S3Error {
        status: status.as_u16(),
        code: pick("Code").unwrap_or_else(|| status.as_str().to_owned()),
        message: pick("Message")
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
    }
}

/// The text of every element named in `wanted`, in document order, with the path of its
/// parent for context-free use (`(name, text)`).
fn fields(xml: &str, wanted: &[&str]) -> Vec<(String, String)> {
    walk(xml)
        .into_iter()
        .filter(|(path, _)| {
            path.rsplit('/')
                .next()
                .is_some_and(|name| wanted.contains(&name))
        })
        .map(|(path, text)| {
            let name = path.rsplit('/').next().unwrap_or("").to_owned();
            (name, text)
        })
        .collect()
}

/// Every text-bearing element of `xml` as (`Parent/Child` path, unescaped text), in
/// document order; an element without text gives an empty string when it closes.
fn walk(xml: &str) -> Vec<(String, String)> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Ok(Event::Text(t)) => {
                if let Ok(s) = t.decode() {
                    text.push_str(&quick_xml::escape::unescape(&s).unwrap_or(s.clone()));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                // `&amp;` and the like between text pieces.
                if let Ok(name) = r.decode() {
                    let entity = format!("&{name};");
                    text.push_str(
                        &quick_xml::escape::unescape(&entity)
                            .unwrap_or_else(|_| entity.clone().into()),
                    );
                }
            }
            Ok(Event::End(_)) => {
                out.push((stack.join("/"), std::mem::take(&mut text)));
                stack.pop();
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

/// A `ListAllMyBucketsResult`.
fn parse_buckets(xml: &str) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for (path, text) in walk(xml) {
        if path.ends_with("Bucket/Name") {
            out.push(Bucket {
                name: text,
                created: String::new(),
            });
        } else if path.ends_with("Bucket/CreationDate")
            && let Some(b) = out.last_mut()
        {
            b.created = text;
        }
    }
    out
}

/// A `ListBucketResult` (version 2).
fn parse_objects(xml: &str) -> ObjectPage {
    let mut page = ObjectPage::default();
    let mut current = Object::default();
    let mut truncated = false;
    let mut next = None;
    for (path, text) in walk(xml) {
        match path.as_str() {
            "ListBucketResult/Contents/Key" => current.key = text,
            "ListBucketResult/Contents/Size" => current.size = text.trim().parse().unwrap_or(0),
            "ListBucketResult/Contents/LastModified" => current.last_modified = text,
            "ListBucketResult/Contents" => page.objects.push(std::mem::take(&mut current)),
            "ListBucketResult/CommonPrefixes/Prefix" => page.prefixes.push(text),
            "ListBucketResult/IsTruncated" => truncated = text.trim() == "true",
            "ListBucketResult/NextContinuationToken" => next = Some(text),
            _ => {}
        }
    }
    page.next = next.filter(|_| truncated);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_parse_as_s3_writes_them() {
        let buckets = parse_buckets(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>alpha</ID></Owner><Buckets><Bucket><Name>photos</Name><CreationDate>2026-12-01T00:00:00.000Z</CreationDate></Bucket><Bucket><Name>site</Name><CreationDate>2026-12-02T00:00:00.000Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"#,
        );
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[1].name, "site");
        assert_eq!(buckets[0].created, "2026-12-01T00:00:00.000Z");

        let page = parse_objects(
            r#"<ListBucketResult><Name>photos</Name><Prefix>2026/</Prefix><IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;en</NextContinuationToken><Contents><Key>2026/a &amp; b.jpg</Key><Size>1024</Size><LastModified>2026-12-01T10:00:00.000Z</LastModified></Contents><Contents><Key>2026/c.jpg</Key><Size>7</Size></Contents><CommonPrefixes><Prefix>2026/12/</Prefix></CommonPrefixes></ListBucketResult>"#,
        );
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "2026/a & b.jpg");
        assert_eq!(page.objects[0].size, 1024);
        assert_eq!(page.objects[1].last_modified, "");
        assert_eq!(page.prefixes, ["2026/12/"]);
        assert_eq!(page.next.as_deref(), Some("tok&en"));
        let last = parse_objects(
            "<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>x</NextContinuationToken></ListBucketResult>",
        );
        assert_eq!(last.next, None);
    }

    #[test]
    fn errors_read_their_code_and_message() {
        let f = fields(
            "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
            &["Code", "Message"],
        );
        assert_eq!(f[0], ("Code".into(), "NoSuchBucket".into()));
        assert_eq!(f[1].1, "The specified bucket does not exist");
        assert!(
            walk("<a><b>unterminated").len() <= 1,
            "bad XML does not panic"
        );
    }

    #[test]
    fn keys_are_encoded_but_keep_their_slashes() {
        assert_eq!(
            object_path("photos", "2026/a b?.jpg"),
            "/photos/2026/a%20b%3F.jpg"
        );
    }
}
