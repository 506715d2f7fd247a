//! Road inspection's evidence images in the tenant's bucket: a tenant whose inspection
//! policy names an `evidence_bucket` has its defects' evidence images moved out of the
//! control plane's database into that bucket of the platform's object storage, and read
//! back from there (`GET /v1/defects/{id}/evidence/{stream}/{seq}`, `api::inspect`).
//!
//! Intake never waits on object storage: frames land in the database as before
//! (`inspection::keep_evidence`), and [`mover_loop`] (started by `server`, every 10 s)
//! takes up to [`BATCH`] images still held there, writes each to a gateway that is up
//! (path-style, SigV4, with the tenant's console S3 key) as
//! `inspect/{defect}/{stream}-{seq}.{jpg|png}`, and on success swaps the blob for the
//! object's `bucket/key` in one write, only if the row still holds its blob (an object
//! whose row went meanwhile is deleted again, best effort). A failure leaves the image
//! where it is, to be retried on the next pass; it is logged when it changes and counted
//! ([`counters`]).
//!
//! The control plane does not know who owns a bucket (buckets live in the gateways'
//! metadata), so a policy naming another tenant's bucket is accepted and refused here by
//! the gateway (`AccessDenied`): counted as `refused`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use lingjing_model::sigv4;
use lingjing_model::snapshot::S3Credential;

use crate::error::StoreError;
use crate::snapshot::Hub;
use crate::store::Store;
use crate::store::inspect::{self as db, EvidenceImage, HeldImage};

/// How often the mover looks for images to move.
pub const EVERY: Duration = Duration::from_secs(10);
/// Most images one pass moves.
pub const BATCH: usize = 50;
/// How long one call to a gateway may take.
const TIMEOUT: Duration = Duration::from_secs(30);

static MOVED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// What the mover did since this process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Images moved into a bucket.
    pub moved: u64,
    /// Writes that failed (no gateway up, a gateway error): retried.
    pub failed: u64,
    /// Writes a gateway refused (the bucket does not exist or is not the tenant's, the key
    /// not known to it yet): retried, and logged.
    pub refused: u64,
}

pub fn counters() -> Counters {
    Counters {
        moved: MOVED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        refused: REFUSED.load(Ordering::Relaxed),
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub moved: u64,
    pub failed: u64,
}

/// The last failure logged per tenant (a failure is logged once per change).
fn last_failures() -> &'static Mutex<HashMap<String, String>> {
    static LAST: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    LAST.get_or_init(Default::default)
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default()
    })
}

/// Runs [`pass`] every `every` until the server stops (it aborts the task).
pub async fn mover_loop(store: std::sync::Arc<Store>, hub: std::sync::Arc<Hub>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = pass(&store, &hub).await {
            tracing::warn!(error = %e, "road inspection: moving evidence images failed; retried");
        }
    }
}

/// One pass: up to [`BATCH`] images still in the database, of tenants whose policy names
/// an evidence bucket (taken in turn from each tenant), written to their buckets.
pub async fn pass(store: &Store, hub: &Hub) -> Result<Pass, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let tenants = db::evidence_buckets(&mut conn).await?;
    if tenants.is_empty() {
        return Ok(Pass::default());
    }
    let mut queues = Vec::new();
    for (tenant, bucket) in tenants {
        let held = db::held_images(&mut conn, &tenant, BATCH as i64).await?;
        if !held.is_empty() {
            queues.push((tenant, bucket, held.into_iter()));
        }
    }
    let gateways = gateways(&mut conn).await?;
    drop(conn);
    // Round robin over tenants, so one whose bucket refuses does not starve the others.
    let mut taken: Vec<(usize, HeldImage)> = Vec::new();
    while taken.len() < BATCH {
        let before = taken.len();
        for (i, q) in queues.iter_mut().enumerate() {
            if taken.len() < BATCH
                && let Some(h) = q.2.next()
            {
                taken.push((i, h));
            }
        }
        if taken.len() == before {
            break;
        }
    }
    let mut out = Pass::default();
    let mut keys: HashMap<usize, S3Credential> = HashMap::new();
    let mut given_up: Vec<usize> = Vec::new();
    for (i, held) in taken {
        if given_up.contains(&i) {
            continue;
        }
        let (tenant, bucket) = (&queues[i].0, &queues[i].1);
        let key = match keys.get(&i) {
            Some(k) => k.clone(),
            None => {
                let k = crate::api::storage::console_credential(store, hub, tenant).await?;
                keys.insert(i, k.clone());
                k
            }
        };
        match move_one(store, &gateways, &key, bucket, &held).await {
            Ok(()) => {
                out.moved += 1;
                MOVED.fetch_add(1, Ordering::Relaxed);
                if last_failures()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(tenant)
                    .is_some()
                {
                    tracing::info!(%tenant, %bucket, "road inspection: evidence images move into the bucket again");
                }
            }
            Err(e) => {
                out.failed += 1;
                let counter = if e.refused { &REFUSED } else { &FAILED };
                counter.fetch_add(1, Ordering::Relaxed);
                // The rest of this tenant's images wait for the next pass.
                given_up.push(i);
                let mut last = last_failures().lock().unwrap_or_else(|e| e.into_inner());
                if last.get(tenant) != Some(&e.message) {
                    tracing::warn!(
                        %tenant,
                        %bucket,
                        refused = e.refused,
                        "road inspection: evidence images cannot move into the bucket ({}); they stay in the database and are retried every {} s",
                        e.message,
                        EVERY.as_secs()
                    );
                    last.insert(tenant.clone(), e.message);
                }
            }
        }
    }
    Ok(out)
}

/// The S3 gateways that are up, as `host:port`.
async fn gateways(conn: &mut sqlx::AnyConnection) -> Result<Vec<String>, StoreError> {
    Ok(
        crate::snapshot::s3_gateways(&crate::snapshot::node_infos(conn).await?)
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

/// The image's type by its magic bytes: (content type, file extension).
pub fn image_kind(bytes: &[u8]) -> (&'static str, &'static str) {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ("image/png", "png")
    } else {
        ("application/octet-stream", "bin")
    }
}

/// The object key of an evidence image.
pub fn object_key(defect: &str, stream: &str, seq: u64, image: &[u8]) -> String {
    format!("inspect/{defect}/{stream}-{seq}.{}", image_kind(image).1)
}

/// A failed S3 call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Failure {
    /// The gateway answered with a refusal (4xx) rather than failing or not answering.
    pub refused: bool,
    /// The HTTP status (0: no gateway answered).
    pub status: u16,
    pub message: String,
}

async fn move_one(
    store: &Store,
    gateways: &[String],
    key: &S3Credential,
    bucket: &str,
    held: &HeldImage,
) -> Result<(), S3Failure> {
    let name = object_key(&held.defect, &held.stream, held.seq, &held.image);
    let content_type = image_kind(&held.image).0;
    call(
        gateways,
        key,
        reqwest::Method::PUT,
        bucket,
        &name,
        Some((content_type, held.image.clone())),
    )
    .await?;
    let object = format!("{bucket}/{name}");
    let db_failure = |e: StoreError| S3Failure {
        refused: false,
        status: 0,
        message: format!("the object is written but the database is not: {e}"),
    };
    let moved = async {
        let mut w = store.write(false).await?;
        let moved =
            db::image_moved(&mut w.tx, &held.defect, &held.stream, held.seq, &object).await?;
        w.commit().await?;
        Ok::<_, StoreError>(moved)
    }
    .await
    .map_err(db_failure)?;
    if moved {
        return Ok(());
    }
    // The row went (a better frame replaced it, the defect was deleted) or another
    // control-plane replica moved it already: the object is removed unless that replica's
    // row points at it.
    let now = async {
        let mut conn = store.pool().acquire().await?;
        db::evidence_image(&mut conn, &held.defect, &held.stream, held.seq).await
    }
    .await
    .map_err(db_failure)?;
    if now != Some(EvidenceImage::Object(object.clone()))
        && let Err(e) = call(gateways, key, reqwest::Method::DELETE, bucket, &name, None).await
    {
        tracing::info!(
            %object,
            "road inspection: an evidence image whose frame went meanwhile stays in the bucket ({})",
            e.message
        );
    }
    Ok(())
}

/// Reads object `object` (`bucket/key`) of tenant `tenant` with its console key from the
/// first gateway that answers: the answer, to stream on.
pub async fn fetch(
    store: &Store,
    hub: &Hub,
    tenant: &str,
    object: &str,
) -> Result<reqwest::Response, crate::error::ApiError> {
    use crate::error::ApiError;
    let (bucket, name) = object
        .split_once('/')
        .ok_or_else(|| ApiError::Internal(format!("evidence object `{object}` has no bucket")))?;
    let mut conn = store.pool().acquire().await?;
    let gateways = gateways(&mut conn).await?;
    drop(conn);
    let key = crate::api::storage::console_credential(store, hub, tenant).await?;
    call(&gateways, &key, reqwest::Method::GET, bucket, name, None)
        .await
        .map_err(|e| match e.status {
            404 => ApiError::NotFound(format!(
                "the evidence image `{object}` is no longer in the bucket: {}",
                e.message
            )),
            _ => ApiError::BadGateway(format!(
                "the evidence image is kept in bucket `{bucket}` and could not be read: {}",
                e.message
            )),
        })
}

/// Sends one signed path-style request to the first gateway that answers.
async fn call(
    gateways: &[String],
    key: &S3Credential,
    method: reqwest::Method,
    bucket: &str,
    name: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<reqwest::Response, S3Failure> {
    let path = format!(
        "/{}/{}",
        sigv4::encode(bucket, true),
        sigv4::encode(name, false)
    );
    let payload = match &body {
        Some((_, b)) => sigv4::payload_sha256(b),
        None => sigv4::EMPTY_SHA256.to_owned(),
    };
    let mut last = S3Failure {
        refused: false,
        status: 0,
        message: "no S3 gateway is up: object storage is not running".into(),
    };
    for host in gateways {
        let signed = sigv4::sign(
            &sigv4::Request {
                method: method.as_str(),
                host,
                path: &path,
                query: &[],
                payload: &payload,
            },
            (&key.access_key, &key.secret),
            SystemTime::now(),
        );
        let mut req = http().request(method.clone(), format!("http://{host}{path}"));
        for (name, value) in signed.fields() {
            req = req.header(name, value);
        }
        if let Some((content_type, bytes)) = &body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(bytes.clone());
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let code = between(&text, "<Code>", "</Code>").unwrap_or("");
                let message = between(&text, "<Message>", "</Message>").unwrap_or("");
                let failure = S3Failure {
                    refused: status.is_client_error(),
                    status: status.as_u16(),
                    message: format!("the S3 gateway {host} answered {status} {code} {message}")
                        .trim_end()
                        .to_owned(),
                };
                if status.is_server_error() {
                    last = failure;
                    continue;
                }
                return Err(failure);
            }
            Err(e) => {
                last.message = format!("the S3 gateway {host} failed: {e}");
            }
        }
    }
    Err(last)
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = text.find(open)? + open.len();
    let len = text[from..].find(close)?;
    Some(&text[from..from + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_say_the_image_type_by_its_magic_bytes() {
        assert_eq!(
            object_key("d-1", "s-1", 7, b"\x89PNG\r\n\x1a\nrest"),
            "inspect/d-1/s-1-7.png"
        );
        assert_eq!(
            object_key("d-1", "s-1", 7, &[0xFF, 0xD8, 0xFF, 0xE0]),
            "inspect/d-1/s-1-7.jpg"
        );
        assert_eq!(image_kind(b"<svg>").0, "application/octet-stream");
        assert_eq!(
            between(
                "<Error><Code>AccessDenied</Code></Error>",
                "<Code>",
                "</Code>"
            ),
            Some("AccessDenied")
        );
    }
}
