//! Prometheus metrics of an edge node, served at `/metrics` on the admin port.

use lingjing_model::snapshot::AnswerTotals;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: String,
    /// HIT, MISS, STALE, REVALIDATED, PASS, ERROR, ...
    pub cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `origin` or `parent`.
    pub tier: String,
}

/// The `X-Cache` values requests are counted under.
const RESULTS: [&str; 6] = ["HIT", "MISS", "STALE", "REVALIDATED", "PASS", "ERROR"];

/// One service's request and sent-byte counters, resolved once per snapshot: the request
/// path counts without building (or hashing) a label set.
#[derive(Debug, Clone, Default)]
pub struct ServiceCounters {
    requests: [Counter; 6],
    pub bytes_out: Counter,
    /// The node's totals (answered, and failed: `ERROR`), for the heartbeat.
    totals: std::sync::Arc<AnswerTotals>,
}

/// The `X-Cache` value of a request the edge could not answer (the upstream failed).
const FAILED: usize = 5;

impl ServiceCounters {
    /// Counts one request answered with `x_cache`.
    pub fn request(&self, x_cache: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == x_cache) {
            self.requests[i].inc();
            self.totals.add(1, u64::from(i == FAILED));
        }
    }
}

/// One upstream tier's metrics, resolved once.
#[derive(Debug, Clone)]
pub struct TierMetrics {
    pub seconds: Histogram,
    pub errors: Counter,
    pub bytes_in: Counter,
}

/// Every metric of the node.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes_out: Family<ServiceLabels, Counter>,
    pub bytes_in: Family<UpstreamLabels, Counter>,
    pub upstream_seconds: Family<UpstreamLabels, Histogram>,
    pub upstream_errors: Family<UpstreamLabels, Counter>,
    /// The upstream metrics of the parent tier, then the origin tier.
    tiers: [TierMetrics; 2],
    pub cache_bytes: Gauge,
    pub cache_objects: Gauge,
    pub evictions: Gauge,
    pub snapshot_version: Gauge,
    /// Share of cache lookups (GET/HEAD not bypassed) answered from the cache.
    pub hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Disk cache entries found torn or corrupt (deleted, never served).
    pub disk_corrupt: Gauge,
    pub lookups: std::sync::atomic::AtomicU64,
    pub hits: std::sync::atomic::AtomicU64,
    /// Memory held by shared fills (`crate::cache::fill`), updated by the fills.
    pub fill: crate::cache::fill::FillMeter,
    /// Memory reserved by store buffers (`crate::cache::budget`).
    pub store_budget: crate::cache::budget::StoreBudgetMeter,
    /// Requests answered and failed (`ERROR`), for the heartbeat (the platform's
    /// error-rate alert).
    pub answer_totals: std::sync::Arc<AnswerTotals>,
}

impl Metrics {
    /// The request and sent-byte counters of `service`.
    pub fn service_counters(&self, service: &str) -> ServiceCounters {
        ServiceCounters {
            requests: RESULTS.map(|r| {
                self.requests
                    .get_or_create(&RequestLabels {
                        service: service.to_owned(),
                        cache: r.to_owned(),
                    })
                    .clone()
            }),
            bytes_out: self
                .bytes_out
                .get_or_create(&ServiceLabels {
                    service: service.to_owned(),
                })
                .clone(),
            totals: self.answer_totals.clone(),
        }
    }

    /// The upstream metrics of `tier`.
    pub fn tier(&self, tier: crate::upstream::Tier) -> &TierMetrics {
        match tier {
            crate::upstream::Tier::Parent => &self.tiers[0],
            crate::upstream::Tier::Origin => &self.tiers[1],
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lingjing_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests by service and cache result",
            requests.clone(),
        );
        let bytes_out = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "sent_bytes",
            "Body bytes sent to clients (counted as they are written)",
            bytes_out.clone(),
        );
        let bytes_in = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_received_bytes",
            "Body bytes received from upstream",
            bytes_in.clone(),
        );
        let upstream_seconds = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "upstream_response_seconds",
            "Time to the upstream response head",
            upstream_seconds.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream fetches",
            upstream_errors.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_used_bytes",
            "Bytes held by the cache",
            cache_bytes.clone(),
        );
        let cache_objects = Gauge::default();
        registry.register(
            "cache_objects",
            "URLs held by the cache",
            cache_objects.clone(),
        );
        let evictions = Gauge::default();
        registry.register(
            "cache_evictions",
            "Objects evicted for room since start",
            evictions.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Edge snapshot version applied",
            snapshot_version.clone(),
        );
        let hit_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "cache_hit_ratio",
            "Share of cache lookups answered from the cache since start",
            hit_ratio.clone(),
        );
        let disk_corrupt = Gauge::default();
        registry.register(
            "disk_cache_corrupt_entries",
            "Disk cache entries found torn or corrupt (deleted, never served)",
            disk_corrupt.clone(),
        );
        let fill = crate::cache::fill::FillMeter::default();
        registry.register(
            "fill_buffered_bytes",
            "Body bytes held in memory by shared fills in progress",
            fill.buffered.clone(),
        );
        registry.register(
            "fill_buffer_peak_bytes",
            "Most body bytes one shared fill has held at once since start",
            fill.peak.clone(),
        );
        registry.register(
            "fill_sealed",
            "Shared fills that reached their buffer limit (later clients fetched on their own)",
            fill.sealed.clone(),
        );
        let store_budget = crate::cache::budget::StoreBudgetMeter::default();
        registry.register(
            "store_buffer_bytes",
            "Bytes reserved by fills keeping bodies to store them (bounded by the store buffer budget)",
            store_budget.reserved.clone(),
        );
        registry.register(
            "store_buffer_peak_bytes",
            "Most bytes reserved by store buffers at once since start",
            store_budget.peak.clone(),
        );
        registry.register(
            "store_buffer_refused",
            "Fills served but not stored because the node's store buffer budget was spent",
            store_budget.refused.clone(),
        );
        let tiers = ["parent", "origin"].map(|tier| {
            let labels = UpstreamLabels {
                tier: tier.to_owned(),
            };
            TierMetrics {
                seconds: upstream_seconds.get_or_create(&labels).clone(),
                errors: upstream_errors.get_or_create(&labels).clone(),
                bytes_in: bytes_in.get_or_create(&labels).clone(),
            }
        });
        Metrics {
            tiers,
            fill,
            store_budget,
            answer_totals: std::sync::Arc::new(AnswerTotals::new(rand::random())),
            registry,
            hit_ratio,
            disk_corrupt,
            lookups: Default::default(),
            hits: Default::default(),
            requests,
            bytes_out,
            bytes_in,
            upstream_seconds,
            upstream_errors,
            cache_bytes,
            cache_objects,
            evictions,
            snapshot_version,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::snapshot::AnswerCountSource;

    #[test]
    fn requests_count_into_the_node_s_answer_totals() {
        let m = Metrics::default();
        let shop = m.service_counters("shop");
        let blog = m.service_counters("blog");
        for r in ["HIT", "MISS", "ERROR", "PASS"] {
            shop.request(r);
        }
        blog.request("ERROR");
        blog.request("not a result");
        let c = m.answer_totals.answer_counts();
        assert_eq!((c.answered, c.failed), (5, 2));
    }
}
