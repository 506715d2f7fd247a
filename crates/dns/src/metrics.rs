//! Prometheus metrics of the DNS server, served at `/metrics` on the admin port
//! (OpenMetrics text): queries by type, response code and transport, answers per site
//! and client line, the time to answer, the snapshot version, truncated responses and
//! dropped packets.
//!
//! Labels are `&'static str` or shared `Arc<str>` taken from the snapshot, so counting a
//! query allocates nothing once its label set has been seen.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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

/// Every metric of the DNS server.
#[derive(Debug)]
pub struct DnsMetrics {
    pub registry: Registry,
    pub queries: Family<QueryLabels, Counter>,
    pub answers: Family<AnswerLabels, Counter>,
    pub duration: Histogram,
    pub snapshot_version: Gauge,
    pub truncated: Counter,
    pub dropped: Counter,
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
        let duration = Histogram::new(exponential_buckets(0.000_01, 2.0, 14));
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
        DnsMetrics {
            registry,
            queries,
            answers,
            duration,
            snapshot_version,
            truncated,
            dropped,
            unknown_line: Arc::from("unknown"),
        }
    }
}

impl DnsMetrics {
    /// Counts one request: answered (`answered`) or dropped, and its outcome.
    pub fn record(&self, outcome: &Outcome, answered: bool, transport: Transport, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        if !answered {
            self.dropped.inc();
            return;
        }
        let labels = QueryLabels {
            qtype: outcome.qtype.map_or("none", <&'static str>::from),
            rcode: rcode_name(outcome.rcode),
            transport: transport_name(transport),
        };
        self.queries.get_or_create(&labels).inc();
        if outcome.truncated {
            self.truncated.inc();
            return;
        }
        for site in &outcome.sites {
            let labels = AnswerLabels {
                site: site.clone(),
                line: outcome
                    .line
                    .clone()
                    .unwrap_or_else(|| self.unknown_line.clone()),
            };
            self.answers.get_or_create(&labels).inc();
        }
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
