//! Prometheus metrics of the DNS server, served at `/metrics` on the admin port
//! (OpenMetrics text): queries by type, response code and transport, answers per site
//! and client line, the time to answer, the snapshot version, truncated responses and
//! dropped packets; and the abuse defences: UDP responses slipped or dropped by rate
//! limiting, `ANY` queries answered minimally, TCP connections refused by a cap or
//! closed by a timeout.
//!
//! Labels are `&'static str` or shared `Arc<str>` taken from the snapshot, so counting a
//! query allocates nothing once its label set has been seen.
//!
//! The UDP workers count into their own [`LocalMetrics`] and add them to the shared
//! metrics once per batch of packets, before sending the batch's responses (so a client
//! that got its answer finds it counted): no lock or shared cache line per query. The
//! time to answer is a [`DurationHistogram`] of atomics, not prometheus-client's
//! `Histogram` (a mutex per observation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::wire::{Outcome, Transport};

/// Labels of `lingjing_dns_queries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// `A`, `AAAA`, ..., `Unknown` for unknown types, `none` without one question.
    pub qtype: &'static str,
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, `FORMERR`, `NOTIMP`, `SERVFAIL`, `BADVERS`, ...
    pub rcode: &'static str,
    /// `udp` or `tcp`.
    pub transport: &'static str,
}

/// Labels of `lingjing_dns_answers_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    /// The site of the node whose address was answered.
    pub site: Arc<str>,
    /// The client's line; `unknown` when it is on none.
    pub line: Arc<str>,
}

/// Labels of `lingjing_dns_tcp_refused_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `per_client` (the client's network holds `max_tcp_connections_per_client`) or
    /// `total` (`max_tcp_connections` are open).
    pub limit: &'static str,
}

/// Labels of `lingjing_dns_tcp_timeouts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `idle` (no complete query in time) or `write` (the client did not read its
    /// response in time).
    pub timeout: &'static str,
}

/// Every metric of the DNS server.
#[derive(Debug)]
pub struct DnsMetrics {
    pub registry: Registry,
    pub queries: Family<QueryLabels, Counter>,
    pub answers: Family<AnswerLabels, Counter>,
    pub duration: DurationHistogram,
    pub snapshot_version: Gauge,
    pub truncated: Counter,
    pub dropped: Counter,
    /// UDP responses over the client network's rate sent truncated (TC=1, slip).
    pub rrl_slipped: Counter,
    /// UDP responses over the client network's rate not sent.
    pub rrl_dropped: Counter,
    /// `ANY` queries answered with one RRset (RFC 8482).
    pub any_minimized: Counter,
    /// TCP connections closed at once because a connection cap was reached.
    pub tcp_refused: Family<RefusedLabels, Counter>,
    /// TCP connections closed by a timeout.
    pub tcp_timeouts: Family<TimeoutLabels, Counter>,
    /// Queries answered and those answered SERVFAIL, for the heartbeat (the platform's
    /// error-rate alert).
    pub answer_totals: Arc<lingjing_model::snapshot::AnswerTotals>,
    unknown_line: Arc<str>,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lingjing_dns");
        let queries = Family::<QueryLabels, Counter>::default();
        registry.register(
            "queries",
            "Queries answered, by question type, response code and transport",
            queries.clone(),
        );
        let answers = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "answers",
            "Addresses answered for service names, by site and client line",
            answers.clone(),
        );
        // 10 µs to about 80 ms.
        let duration = DurationHistogram::new(BOUNDS.iter().copied());
        registry.register(
            "query_duration_seconds",
            "Time to compute a response, from the request's bytes to the response's",
            duration.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Version of the DNS snapshot served (0: none yet)",
            snapshot_version.clone(),
        );
        let truncated = Counter::default();
        registry.register(
            "truncated_responses",
            "UDP responses cut to fit the client's payload size (TC set)",
            truncated.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "dropped_packets",
            "Requests not answered: too short, not a query, unencodable, or a panic",
            dropped.clone(),
        );
        let rrl_slipped = Counter::default();
        registry.register(
            "rrl_slipped_responses",
            "UDP responses over the client network's rate limit sent minimal with TC set \
             (slip), so genuine clients retry over TCP",
            rrl_slipped.clone(),
        );
        let rrl_dropped = Counter::default();
        registry.register(
            "rrl_dropped_responses",
            "UDP responses over the client network's rate limit not sent",
            rrl_dropped.clone(),
        );
        let any_minimized = Counter::default();
        registry.register(
            "any_minimized_responses",
            "ANY queries answered with one RRset instead of all (RFC 8482)",
            any_minimized.clone(),
        );
        let tcp_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "tcp_refused_connections",
            "TCP connections closed on accept because a connection cap was reached, by cap",
            tcp_refused.clone(),
        );
        let tcp_timeouts = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "tcp_timeouts",
            "TCP connections closed by a timeout: idle (no complete query in time) or \
             write (the client did not read its response in time)",
            tcp_timeouts.clone(),
        );
        DnsMetrics {
            registry,
            queries,
            answers,
            duration,
            snapshot_version,
            truncated,
            dropped,
            rrl_slipped,
            rrl_dropped,
            any_minimized,
            tcp_refused,
            tcp_timeouts,
            answer_totals: Arc::new(lingjing_model::snapshot::AnswerTotals::new(run_id())),
            unknown_line: Arc::from("unknown"),
        }
    }
}

impl DnsMetrics {
    /// Counts one request: answered (`answered`) or dropped, and its outcome.
    pub fn record(&self, outcome: &Outcome, answered: bool, transport: Transport, took: Duration) {
        let mut local = LocalMetrics::default();
        local.record(outcome, answered, transport, took);
        local.flush(self);
    }

    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the DNS metrics");
        }
        text
    }
}

/// This start's id for the answer totals: the clock in nanoseconds and the process id
/// (a restart counts from zero under another id).
fn run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(40)
}

/// One answered request, as the metrics label it.
pub(crate) struct Answer<'a> {
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
    pub truncated: bool,
    pub transport: Transport,
    pub line: Option<&'a Arc<str>>,
}

/// Counts kept by one worker between two [`flush`](LocalMetrics::flush)es: a few label
/// sets each, found by a short linear scan.
#[derive(Debug, Default)]
pub struct LocalMetrics {
    queries: Vec<(QueryLabels, u64)>,
    /// Site, line (`None`: unknown), count.
    answers: Vec<(Arc<str>, Option<Arc<str>>, u64)>,
    /// Per bucket of [`DurationHistogram`], then the count and the sum in nanoseconds.
    durations: Vec<u64>,
    duration_count: u64,
    duration_nanos: u64,
    truncated: u64,
    dropped: u64,
    any_minimized: u64,
    /// Responses slipped and dropped by rate limiting.
    pub(crate) rrl_slipped: u64,
    pub(crate) rrl_dropped: u64,
}

impl LocalMetrics {
    /// Counts one request, as [`DnsMetrics::record`] does.
    pub fn record(
        &mut self,
        outcome: &Outcome,
        answered: bool,
        transport: Transport,
        took: Duration,
    ) {
        if !answered {
            self.observe(took);
            self.dropped += 1;
            return;
        }
        let answer = Answer {
            qtype: outcome.qtype,
            rcode: outcome.rcode,
            truncated: outcome.truncated,
            transport,
            line: outcome.line.as_ref(),
        };
        self.record_answer(&answer, outcome.sites.iter(), took);
    }

    /// Counts one request answered as `answer`, with the sites of the addresses in it.
    pub(crate) fn record_answer<'a>(
        &mut self,
        answer: &Answer<'a>,
        sites: impl Iterator<Item = &'a Arc<str>>,
        took: Duration,
    ) {
        self.observe(took);
        let labels = QueryLabels {
            qtype: answer.qtype.map_or("none", <&'static str>::from),
            rcode: rcode_name(answer.rcode),
            transport: transport_name(answer.transport),
        };
        match self.queries.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, n)) => *n += 1,
            None => self.queries.push((labels, 1)),
        }
        if answer.qtype == Some(RecordType::ANY) {
            self.any_minimized += 1;
        }
        if answer.truncated {
            self.truncated += 1;
            return;
        }
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        for site in sites {
            let found = self.answers.iter_mut().find(|(s, l, _)| {
                same(s, site)
                    && match (l, answer.line) {
                        (Some(a), Some(b)) => same(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            });
            match found {
                Some((_, _, n)) => *n += 1,
                None => self.answers.push((site.clone(), answer.line.cloned(), 1)),
            }
        }
    }

    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BOUNDS.iter().take_while(|b| **b < secs).count();
        if self.durations.len() <= BOUNDS.len() {
            self.durations.resize(BOUNDS.len() + 1, 0);
        }
        if let Some(n) = self.durations.get_mut(bucket) {
            *n += 1;
        }
        self.duration_count += 1;
        self.duration_nanos = self
            .duration_nanos
            .saturating_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds the counts to `metrics` and starts again from zero (keeping the label sets'
    /// room, so a steady worker allocates nothing).
    pub fn flush(&mut self, metrics: &DnsMetrics) {
        for (labels, n) in self.queries.drain(..) {
            metrics.queries.get_or_create(&labels).inc_by(n);
            let failed = if labels.rcode == "SERVFAIL" { n } else { 0 };
            metrics.answer_totals.add(n, failed);
        }
        for (site, line, n) in self.answers.drain(..) {
            let labels = AnswerLabels {
                site,
                line: line.unwrap_or_else(|| metrics.unknown_line.clone()),
            };
            metrics.answers.get_or_create(&labels).inc_by(n);
        }
        if self.duration_count > 0 {
            metrics.duration.add(&self.durations, self.duration_nanos);
            self.durations.iter_mut().for_each(|n| *n = 0);
            self.duration_count = 0;
            self.duration_nanos = 0;
        }
        if self.truncated > 0 {
            metrics
                .truncated
                .inc_by(std::mem::take(&mut self.truncated));
        }
        if self.dropped > 0 {
            metrics.dropped.inc_by(std::mem::take(&mut self.dropped));
        }
        for (count, counter) in [
            (&mut self.any_minimized, &metrics.any_minimized),
            (&mut self.rrl_slipped, &metrics.rrl_slipped),
            (&mut self.rrl_dropped, &metrics.rrl_dropped),
        ] {
            if *count > 0 {
                counter.inc_by(std::mem::take(count));
            }
        }
    }
}

/// Upper bounds of the duration buckets: 10 µs to about 80 ms (then +Inf). The shared
/// histogram and the workers' local counts use the same.
static BOUNDS: std::sync::LazyLock<Vec<f64>> =
    std::sync::LazyLock::new(|| exponential_buckets(0.000_01, 2.0, 14).collect());

/// A histogram of durations kept in atomics: per-bucket counts (finite upper bounds,
/// then +Inf) and the sum in nanoseconds; encoded as an OpenMetrics histogram in
/// seconds, its count the total of the buckets.
#[derive(Debug, Clone)]
pub struct DurationHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    nanos: AtomicU64,
}

impl DurationHistogram {
    /// A histogram with these finite upper bounds, then +Inf.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Vec<f64> = bounds
            .into_iter()
            .filter(|b| b.is_finite())
            .chain(std::iter::once(f64::INFINITY))
            .collect();
        DurationHistogram {
            inner: Arc::new(HistogramInner {
                buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                bounds,
                nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = self.inner.bounds.iter().take_while(|b| **b < secs).count();
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        if let Some(b) = self.inner.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Adds per-bucket counts (as many as there are buckets) and their sum in
    /// nanoseconds.
    fn add(&self, buckets: &[u64], nanos: u64) {
        for (b, n) in self.inner.buckets.iter().zip(buckets) {
            if *n > 0 {
                b.fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.inner.nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .zip(&self.inner.buckets)
            .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.inner.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The conventional mnemonic of a response code.
pub fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// `udp` or `tcp`.
pub fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

/// The question type's mnemonic (`Unknown` for types hickory does not know).
pub fn qtype_name(qtype: RecordType) -> &'static str {
    qtype.into()
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use lingjing_model::snapshot::AnswerCountSource;

    #[test]
    fn answers_and_servfails_reach_the_totals_at_each_flush() {
        let m = DnsMetrics::default();
        let mut local = LocalMetrics::default();
        let site: Arc<str> = Arc::from("wx-1");
        for rcode in [
            ResponseCode::NoError,
            ResponseCode::NXDomain,
            ResponseCode::ServFail,
        ] {
            let answer = Answer {
                qtype: Some(RecordType::A),
                rcode,
                truncated: false,
                transport: Transport::Udp,
                line: None,
            };
            local.record_answer(&answer, std::iter::once(&site), Duration::from_micros(5));
        }
        assert_eq!(
            m.answer_totals.answer_counts().answered,
            0,
            "not before a flush"
        );
        local.flush(&m);
        let c = m.answer_totals.answer_counts();
        assert_eq!((c.answered, c.failed), (3, 1));
    }
}
