//! The gateway's Prometheus metrics and its admin listener (`/metrics`, `/healthz`):
//! requests by S3 operation and status, the time to the response's head per operation,
//! and bytes in and out (as declared by the request's decoded length and the response's
//! `Content-Length`).
//!
//! The operation name comes from s3s itself: [`Access`] (the gateway's `S3Access`, which
//! s3s calls for every routed request) writes it into an [`OpSlot`] the server put in the
//! request's extensions. Requests refused before routing (a bad signature, an unknown
//! key) count as operation `-`; CORS preflights (answered before s3s) as `CorsPreflight`.
//! [`Access`] is also where unsigned requests are decided ([`super::acl`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::meta::Meta;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpStatus {
    op: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

/// The gateway's metrics.
pub struct GatewayMetrics {
    requests: Family<OpStatus, Counter>,
    head_seconds: Family<Op, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    gc_runs: Counter,
    gc_deleted: Counter,
    gc_freed_bytes: Counter,
    gc_errors: Counter,
    repair_runs: Counter,
    repair_missing: Counter,
    repair_repaired: Counter,
    repair_unrecoverable: Counter,
    repair_errors: Counter,
    rebalance_moved: Counter,
    rebalance_deferred: Counter,
    registry: Registry,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let requests = Family::<OpStatus, Counter>::default();
        let head_seconds = Family::<Op, Histogram>::new_with_constructor(|| {
            // 1 ms to ~33 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let mut registry = Registry::with_prefix("lingjing_s3");
        registry.register(
            "requests",
            "S3 requests by operation and status",
            requests.clone(),
        );
        registry.register(
            "response_head_seconds",
            "Time from a request's head to its response's head, by operation",
            head_seconds.clone(),
        );
        registry.register(
            "bytes_in",
            "Object bytes received (declared lengths)",
            bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes sent in response bodies (Content-Length)",
            bytes_out.clone(),
        );
        let (gc_runs, gc_deleted, gc_freed_bytes, gc_errors) = Default::default();
        registry.register(
            "gc_runs",
            "Garbage-collection passes this gateway ran (it held the lease)",
            Counter::clone(&gc_runs),
        );
        registry.register(
            "gc_deleted_blocks",
            "Unreferenced blocks and shards garbage collection deleted",
            Counter::clone(&gc_deleted),
        );
        registry.register(
            "gc_freed_bytes",
            "Bytes garbage collection freed on the storage nodes",
            Counter::clone(&gc_freed_bytes),
        );
        registry.register(
            "gc_errors",
            "Garbage-collection passes that failed or could not reach a node",
            Counter::clone(&gc_errors),
        );
        let (repair_runs, repair_missing, repair_repaired, repair_unrecoverable, repair_errors) =
            Default::default();
        for (name, help, counter) in [
            (
                "repair_runs",
                "Repair passes this gateway ran (it held the lease)",
                &repair_runs,
            ),
            (
                "repair_missing",
                "Copies and shards repair found missing from the node their block map names",
                &repair_missing,
            ),
            (
                "repair_repaired",
                "Copies and shards repair wrote back",
                &repair_repaired,
            ),
            (
                "repair_unrecoverable",
                "Blocks repair found with too few pieces left to read (data lost until a node returns)",
                &repair_unrecoverable,
            ),
            (
                "repair_errors",
                "Repair passes that failed, and pieces whose write back failed",
                &repair_errors,
            ),
        ] {
            registry.register(name, help, Counter::clone(counter));
        }
        let (rebalance_moved, rebalance_deferred): (Counter, Counter) = Default::default();
        registry.register(
            "rebalance_moved",
            "Copies and shards rebalancing wrote to the nodes the layout places them on",
            Counter::clone(&rebalance_moved),
        );
        registry.register(
            "rebalance_deferred",
            "Misplaced map entries rebalancing left for a later pass (a node down, a row changed, a failed read or write)",
            Counter::clone(&rebalance_deferred),
        );
        GatewayMetrics {
            rebalance_moved,
            rebalance_deferred,
            requests,
            head_seconds,
            bytes_in,
            bytes_out,
            repair_runs,
            repair_missing,
            repair_repaired,
            repair_unrecoverable,
            repair_errors,
            gc_runs,
            gc_deleted,
            gc_freed_bytes,
            gc_errors,
            registry,
        }
    }
}

impl GatewayMetrics {
    /// Counts one garbage-collection pass (`None`: it failed).
    pub(crate) fn gc(&self, report: Option<&crate::gc::GcReport>) {
        match report {
            Some(r) => {
                self.gc_runs.inc();
                self.gc_deleted.inc_by(r.deleted());
                self.gc_freed_bytes.inc_by(r.freed_bytes());
                if r.nodes.iter().any(|n| n.error.is_some()) {
                    self.gc_errors.inc();
                }
            }
            None => {
                self.gc_errors.inc();
            }
        }
    }

    /// Counts one repair pass (`None`: it failed).
    pub(crate) fn repair(&self, report: Option<&crate::repair::RepairReport>) {
        match report {
            Some(r) => {
                self.repair_runs.inc();
                self.repair_missing.inc_by(r.missing);
                self.repair_repaired.inc_by(r.repaired);
                self.repair_unrecoverable.inc_by(r.unrecoverable);
                self.repair_errors.inc_by(r.failed);
            }
            None => {
                self.repair_errors.inc();
            }
        }
    }

    /// Counts one rebalancing pass (`None`: it failed).
    pub(crate) fn rebalance(&self, report: Option<&crate::rebalance::RebalanceReport>) {
        match report {
            Some(r) => {
                self.rebalance_moved.inc_by(r.pieces_written);
                self.rebalance_deferred.inc_by(r.deferred);
            }
            None => {
                self.rebalance_deferred.inc();
            }
        }
    }

    /// Counts one answered request.
    pub(crate) fn observe(
        &self,
        op: Option<String>,
        status: StatusCode,
        elapsed: Duration,
        bytes_in: Option<u64>,
        response: &HeaderMap,
    ) {
        let op = op.unwrap_or_else(|| "-".to_owned());
        self.requests
            .get_or_create(&OpStatus {
                op: op.clone(),
                status: status.as_u16(),
            })
            .inc();
        self.head_seconds
            .get_or_create(&Op { op })
            .observe(elapsed.as_secs_f64());
        if let Some(n) = bytes_in {
            self.bytes_in.inc_by(n);
        }
        if let Some(n) = header_u64(response, "content-length") {
            self.bytes_out.inc_by(n);
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The body length a request declares (an aws-chunked body's payload length is in
/// `x-amz-decoded-content-length`).
pub(crate) fn declared_len(request: &HeaderMap) -> Option<u64> {
    header_u64(request, "x-amz-decoded-content-length")
        .or_else(|| header_u64(request, "content-length"))
}

/// Where [`Access`] leaves the operation name of one request.
#[derive(Clone, Default)]
pub(crate) struct OpSlot(Arc<Mutex<Option<String>>>);

impl OpSlot {
    pub(crate) fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    /// The operation, without taking it.
    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }

    pub(crate) fn set(&self, op: &str) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(op.to_owned());
        }
    }
}

/// The gateway's access check: notes the operation for the metrics, then lets signed
/// requests through (their handlers check the tenant) and decides on unsigned ones
/// ([`super::acl::check_anonymous`]: only reads of `public-read` buckets pass).
pub(crate) struct Access {
    pub(crate) meta: Meta,
    pub(crate) keys: super::Keys,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            slot.set(&op);
        }
        match cx.credentials() {
            Some(c) => match self.keys.read_only_bucket(&c.access_key) {
                Some(bucket) => super::acl::check_read_only(cx, &bucket),
                None => Ok(()),
            },
            None => super::acl::check_anonymous(&self.meta, cx).await,
        }
    }
}

/// A running admin listener.
pub struct AdminHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves `/metrics` and `/healthz` of a gateway on `listen`.
pub async fn serve_admin(
    listen: SocketAddr,
    metrics: Arc<GatewayMetrics>,
) -> std::io::Result<AdminHandle> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode() {
                        Ok(text) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
    let (addr, stop, task) = crate::serve::serve(listen, app, "S3 admin").await?;
    Ok(AdminHandle { addr, stop, task })
}
