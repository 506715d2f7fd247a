//! The storage node's HTTP server: the gateways' access to its [`BlockStore`].
//!
//! | route | answer |
//! |---|---|
//! | `PUT /v1/blocks/{id}` | 201 stored (durable), 200 already held; 400 bytes that do not hash to `id`; 413 over the block limit; 507 the disk is full (less than the reserve would be left) |
//! | `GET /v1/blocks/{id}` | 200 the checked bytes; 404 not here; 500 `corrupt` (quarantined: read another replica) |
//! | `GET /v1/blocks/{id}?check=false` | 200 the bytes as the disk holds them, not hashed here: for a gateway, which hashes every block it reads and asks again without `check=false` when they do not match |
//! | `HEAD /v1/blocks/{id}` | 200 with `Content-Length`, 404 |
//! | `DELETE /v1/blocks/{id}` | 204, 404 |
//! | `DELETE /v1/blocks/{id}?older_than_ms=T` | garbage collection: 204 deleted only if last written before `T` (ms since the epoch; writing a block again renews it); 409 written since, kept; 404 |
//! | `GET /v1/blocks?after={id}&limit=N` | up to `N` (1–10000, default 1000) blocks held, in id order after `after`: `{"blocks": [{"id", "len", "modified_ms"}]}` |
//! | `GET /v1/status` | [`NodeStatus`] as JSON: [`StoreStatus`] and the scrubber's [`ScrubState`] |
//! | `POST /v1/scrub` | 202 a scrub pass starts now; 200 `{"started": false}` one is running |
//! | `GET /healthz`, `GET /metrics` | liveness; Prometheus metrics |
//!
//! Every `/v1` route needs `Authorization: Bearer <cluster token>` (the secret the
//! gateways and storage nodes share; compared in constant time); `/healthz` and
//! `/metrics` say nothing about tenants' data and need none. Errors are JSON
//! `{"error": "..."}` saying what to do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::block::{BlockError, BlockId, BlockStore, Put, Removed, StoreStatus};
use crate::scrub::{ScrubSchedule, ScrubState, Scrubber};

/// Default largest block a node accepts.
pub const DEFAULT_MAX_BLOCK_BYTES: u64 = 16 * 1024 * 1024;

/// A storage node's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id in the inventory.
    pub node_id: String,
    pub listen: SocketAddr,
    /// Where its blocks live.
    pub data_dir: PathBuf,
    /// The cluster token every `/v1` request must carry (not empty).
    pub token: String,
    /// The largest block accepted.
    pub max_block_bytes: u64,
    /// When it scrubs its blocks (a pass can also be asked for: `POST /v1/scrub`).
    pub scrub: ScrubSchedule,
    /// Free bytes left on the disk: writes that would leave less are refused (507).
    pub reserve_bytes: u64,
}

/// A running storage node.
pub struct NodeHandle {
    pub store: Arc<BlockStore>,
    node: Arc<Node>,
    node_id: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NodeHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node's id in the inventory.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What reads the node's status (disk and scrub) while it runs.
    pub fn status_view(&self) -> StatusView {
        StatusView(self.node.clone())
    }

    /// What replaces the cluster token while the node runs.
    pub fn token_setter(&self) -> TokenSetter {
        TokenSetter(self.node.clone())
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Reads a running node's status: its disk and its scrubs (for its heartbeats).
#[derive(Clone)]
pub struct StatusView(Arc<Node>);

impl StatusView {
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            store: self.0.store.status(),
            scrub: self.0.scrubber.state(),
        }
    }
}

/// Replaces a running node's cluster token (when the control plane's snapshot brings a
/// new one).
#[derive(Clone)]
pub struct TokenSetter(Arc<Node>);

impl TokenSetter {
    /// From now on requests must carry `token` (an empty one is ignored).
    pub fn set(&self, token: &str) {
        if token.trim().is_empty() {
            return;
        }
        let mut t = match self.0.token.write() {
            Ok(t) => t,
            Err(e) => e.into_inner(),
        };
        if **t != *token {
            *t = Arc::from(token);
            tracing::info!("storage node: cluster token replaced");
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    /// put, get, head, delete, status.
    op: String,
    status: u16,
}

/// The node's metrics.
#[derive(Default)]
struct NodeMetrics {
    requests: Family<OpLabels, Counter>,
    blocks_written: Counter,
    blocks_read: Counter,
    checksum_failures: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    blocks: Gauge,
    used_bytes: Gauge,
    free_bytes: Gauge,
    refused_full: Gauge,
}

impl NodeMetrics {
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("lingjing_storage");
        r.register(
            "requests",
            "Block requests by operation and status",
            self.requests.clone(),
        );
        r.register(
            "blocks_written",
            "Blocks written (durably)",
            self.blocks_written.clone(),
        );
        r.register(
            "blocks_read",
            "Blocks read and checked",
            self.blocks_read.clone(),
        );
        r.register(
            "checksum_failures",
            "Blocks that failed their checksum on read (quarantined)",
            self.checksum_failures.clone(),
        );
        r.register("bytes_in", "Block bytes written", self.bytes_in.clone());
        r.register("bytes_out", "Block bytes served", self.bytes_out.clone());
        r.register("blocks", "Blocks held", self.blocks.clone());
        r.register(
            "used_bytes",
            "Bytes of blocks held",
            self.used_bytes.clone(),
        );
        r.register(
            "free_bytes",
            "Bytes free on the node's file system",
            self.free_bytes.clone(),
        );
        r.register(
            "writes_refused_full",
            "Block writes refused since the node started because its disk was full (507; the gateways write elsewhere)",
            self.refused_full.clone(),
        );
        r
    }

    fn count(&self, op: &str, status: StatusCode) {
        self.requests
            .get_or_create(&OpLabels {
                op: op.to_owned(),
                status: status.as_u16(),
            })
            .inc();
    }
}

struct Node {
    store: Arc<BlockStore>,
    scrubber: Arc<Scrubber>,
    /// The cluster token; replaced when the control plane's snapshot brings a new one.
    token: std::sync::RwLock<Arc<str>>,
    metrics: NodeMetrics,
    registry: Registry,
}

/// Opens the block store of `config` and serves it until shut down.
pub async fn start(config: NodeConfig) -> std::io::Result<NodeHandle> {
    if config.token.trim().is_empty() {
        return Err(std::io::Error::other(
            "a storage node needs a cluster token (the gateways' shared secret)",
        ));
    }
    let dir = config.data_dir.clone();
    let max = config.max_block_bytes;
    let store = tokio::task::spawn_blocking(move || BlockStore::open(&dir, max))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot open the block store in {}: {e}",
                config.data_dir.display()
            ))
        })?;
    store.set_reserve_bytes(config.reserve_bytes);
    let store = Arc::new(store);
    let metrics = NodeMetrics::default();
    let registry = metrics.registry();
    let node = Arc::new(Node {
        store: store.clone(),
        scrubber: Arc::new(Scrubber::default()),
        token: std::sync::RwLock::new(Arc::from(config.token.as_str())),
        metrics,
        registry,
    });
    let body_limit = usize::try_from(config.max_block_bytes).unwrap_or(usize::MAX);
    let v1 = Router::new()
        .route(
            "/v1/blocks/{id}",
            get(get_block)
                .head(head_block)
                .put(put_block)
                .delete(delete_block),
        )
        .route("/v1/blocks", get(list_blocks))
        .route("/v1/status", get(status))
        .route("/v1/scrub", post(scrub_now))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(node.clone(), authorize));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_page))
        .merge(v1)
        .with_state(node.clone());
    let (addr, stop, task) = crate::serve::serve(config.listen, app, "storage").await?;
    tracing::info!(node = %config.node_id, %addr, "storage node listening");
    tokio::spawn(
        node.scrubber
            .clone()
            .run(store.clone(), config.scrub, stop.subscribe()),
    );
    Ok(NodeHandle {
        store,
        node,
        node_id: config.node_id.clone(),
        addr,
        stop,
        task,
    })
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

/// Refuses `/v1` requests without the cluster token.
async fn authorize(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = node
        .token
        .read()
        .map(|t| t.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    if presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let mut res = error(
        StatusCode::UNAUTHORIZED,
        "this storage node serves only the platform's gateways: send Authorization: Bearer <cluster token>",
    );
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlockError> + Send + 'static,
) -> Result<T, BlockError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(BlockError::Io(std::io::Error::other(e))))
}

fn block_error(node: &Node, e: BlockError) -> Response {
    match e {
        BlockError::BadId(_) | BlockError::Mismatch { .. } => error(StatusCode::BAD_REQUEST, e),
        BlockError::TooLarge { .. } => error(StatusCode::PAYLOAD_TOO_LARGE, e),
        BlockError::Full { .. } => error(StatusCode::INSUFFICIENT_STORAGE, e),
        BlockError::Corrupt { .. } => {
            node.metrics.checksum_failures.inc();
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
        BlockError::Io(_) => {
            tracing::error!(error = %e, "block I/O failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

async fn put_block(State(node): State<Arc<Node>>, Path(id): Path<String>, body: Bytes) -> Response {
    let res = match id.parse::<BlockId>() {
        Err(e) => block_error(&node, e),
        Ok(id) => {
            let store = node.store.clone();
            let len = body.len() as u64;
            match blocking(move || store.put(&id, &body)).await {
                Ok(Put::Stored) => {
                    node.metrics.blocks_written.inc();
                    node.metrics.bytes_in.inc_by(len);
                    StatusCode::CREATED.into_response()
                }
                Ok(Put::Present) => StatusCode::OK.into_response(),
                Err(e) => block_error(&node, e),
            }
        }
    };
    node.metrics.count("put", res.status());
    res
}

/// The query of a block read: `check=false` skips the node's own hash of the bytes.
#[derive(serde::Deserialize)]
struct ReadQuery {
    #[serde(default = "checked")]
    check: bool,
}

fn checked() -> bool {
    true
}

async fn get_block(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Response {
    let res = match id.parse::<BlockId>() {
        Err(e) => block_error(&node, e),
        Ok(id) => {
            let store = node.store.clone();
            let read = move || {
                if query.check {
                    store.get(&id)
                } else {
                    store.get_unchecked(&id)
                }
            };
            match blocking(read).await {
                Ok(Some(data)) => {
                    node.metrics.blocks_read.inc();
                    node.metrics.bytes_out.inc_by(data.len() as u64);
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    (headers, data).into_response()
                }
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    format!("block {id} is not on this node"),
                ),
                Err(e) => block_error(&node, e),
            }
        }
    };
    node.metrics.count("get", res.status());
    res
}

async fn head_block(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    let res = match id.parse::<BlockId>() {
        Err(e) => block_error(&node, e),
        Ok(id) => {
            let store = node.store.clone();
            match blocking(move || store.len(&id)).await {
                Ok(Some(len)) => ([(header::CONTENT_LENGTH, len.to_string())], ()).into_response(),
                Ok(None) => StatusCode::NOT_FOUND.into_response(),
                Err(e) => block_error(&node, e),
            }
        }
    };
    node.metrics.count("head", res.status());
    res
}

/// The query of a delete: `older_than_ms` makes it garbage collection's conditional one.
#[derive(serde::Deserialize)]
struct DeleteQuery {
    older_than_ms: Option<u64>,
}

async fn delete_block(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    let res = match id.parse::<BlockId>() {
        Err(e) => block_error(&node, e),
        Ok(id) => {
            let store = node.store.clone();
            let gone = || {
                error(
                    StatusCode::NOT_FOUND,
                    format!("block {id} is not on this node"),
                )
            };
            match query.older_than_ms {
                None => match blocking(move || store.delete(&id)).await {
                    Ok(true) => StatusCode::NO_CONTENT.into_response(),
                    Ok(false) => gone(),
                    Err(e) => block_error(&node, e),
                },
                Some(ms) => {
                    let cutoff = UNIX_EPOCH + Duration::from_millis(ms);
                    match blocking(move || store.delete_if_older(&id, cutoff)).await {
                        Ok(Removed::Deleted(_)) => StatusCode::NO_CONTENT.into_response(),
                        Ok(Removed::Kept) => error(
                            StatusCode::CONFLICT,
                            format!("block {id} was written after {ms} ms: kept"),
                        ),
                        Ok(Removed::Absent) => gone(),
                        Err(e) => block_error(&node, e),
                    }
                }
            }
        }
    };
    node.metrics.count("delete", res.status());
    res
}

/// The query of a listing.
#[derive(serde::Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The most blocks one listing returns.
pub const MAX_LIST: usize = 10_000;

/// One block of a listing (`GET /v1/blocks`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListedBlock {
    pub id: String,
    pub len: u64,
    /// When it was last written, in ms since the Unix epoch.
    pub modified_ms: u64,
}

/// A page of `GET /v1/blocks`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BlockList {
    pub blocks: Vec<ListedBlock>,
}

async fn list_blocks(State(node): State<Arc<Node>>, Query(query): Query<ListQuery>) -> Response {
    let res = (|| {
        let after = match query.after.as_deref() {
            None | Some("") => None,
            Some(a) => Some(a.parse::<BlockId>()?),
        };
        Ok::<_, BlockError>((after, query.limit.unwrap_or(1000)))
    })();
    let res = match res {
        Err(e) => block_error(&node, e),
        Ok((_, limit)) if !(1..=MAX_LIST).contains(&limit) => error(
            StatusCode::BAD_REQUEST,
            format!("limit is 1 to {MAX_LIST}, not {limit}"),
        ),
        Ok((after, limit)) => {
            let store = node.store.clone();
            match blocking(move || store.list(after.as_ref(), limit)).await {
                Ok(listed) => axum::Json(BlockList {
                    blocks: listed
                        .into_iter()
                        .map(|l| ListedBlock {
                            id: l.id.to_string(),
                            len: l.len,
                            modified_ms: l
                                .modified
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        })
                        .collect(),
                })
                .into_response(),
                Err(e) => block_error(&node, e),
            }
        }
    };
    node.metrics.count("list", res.status());
    res
}

/// `GET /v1/status`: the store's counts and space, and where scrubbing stands.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub store: StoreStatus,
    pub scrub: ScrubState,
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    node.metrics.count("status", StatusCode::OK);
    axum::Json(NodeStatus {
        store: node.store.status(),
        scrub: node.scrubber.state(),
    })
    .into_response()
}

/// `POST /v1/scrub`: 202 a pass starts now; 200 one is already running.
async fn scrub_now(State(node): State<Arc<Node>>) -> Response {
    let started = node.scrubber.request();
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    node.metrics.count("scrub", status);
    (
        status,
        axum::Json(serde_json::json!({ "started": started })),
    )
        .into_response()
}

async fn metrics_page(State(node): State<Arc<Node>>) -> Response {
    let s = node.store.status();
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    node.metrics.blocks.set(gauge(s.blocks));
    node.metrics.used_bytes.set(gauge(s.used_bytes));
    node.metrics.free_bytes.set(gauge(s.free_bytes));
    node.metrics.refused_full.set(gauge(s.refused_full));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &node.registry).is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
