//! Per-service traffic counters (requests and body bytes sent, by cache hit, miss or pass;
//! body bytes received), counted lock-free on the hot path and taken by the agent to
//! report to the control plane with each heartbeat. Body bytes are counted as a body is
//! written or read (`crate::body::counted`), so a chunked response counts and an aborted
//! one counts what was sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lingjing_model::snapshot::UsageSample;
use lingjing_model::snapshot::UsageSource;

/// How a request was answered, for metering (`crate::proxy::CacheResult` folded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From the cache: fresh, stale, or revalidated with the upstream.
    Hit,
    /// Fetched upstream to be cached.
    Miss,
    /// Passed through uncached, or failed.
    Pass,
}

/// The counters of one service.
#[derive(Debug, Default)]
pub struct UsageCounters {
    /// Requests and body bytes sent, by [`Served`] (hit, miss, pass).
    requests: [AtomicU64; 3],
    bytes_out: [AtomicU64; 3],
    /// Body bytes received: from clients and from upstream.
    bytes_in: AtomicU64,
}

impl UsageCounters {
    /// Counts a request answered as `served` and `bytes_out` body bytes sent.
    pub fn record(&self, served: Served, bytes_out: u64) {
        self.request(served);
        self.sent(served, bytes_out);
    }

    /// Counts a request (its body bytes are counted as they are sent: [`Self::sent`]).
    pub fn request(&self, served: Served) {
        self.requests[served as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts body bytes written to a client for a request answered as `served`.
    pub fn sent(&self, served: Served, bytes: u64) {
        self.bytes_out[served as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts body bytes received (from a client or from upstream).
    pub fn received(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// What was counted since the last take, as `service`'s sample (counters kept).
    pub fn counted(&self, service: &str) -> UsageSample {
        self.read(service, |a| a.load(Ordering::Relaxed))
    }

    /// What was counted since the last call, as `service`'s sample (counters reset).
    fn take(&self, service: &str) -> UsageSample {
        self.read(service, |a| a.swap(0, Ordering::Relaxed))
    }

    fn read(&self, service: &str, swap: impl Fn(&AtomicU64) -> u64) -> UsageSample {
        let requests = self.requests.each_ref().map(&swap);
        let bytes_out = self.bytes_out.each_ref().map(&swap);
        UsageSample {
            service: service.to_owned(),
            requests: requests.iter().fold(0u64, |a, b| a.saturating_add(*b)),
            bytes_out: bytes_out.iter().fold(0u64, |a, b| a.saturating_add(*b)),
            hit_requests: requests[Served::Hit as usize],
            hit_bytes_out: bytes_out[Served::Hit as usize],
            miss_requests: requests[Served::Miss as usize],
            miss_bytes_out: bytes_out[Served::Miss as usize],
            bytes_in: swap(&self.bytes_in),
        }
    }
}

/// Every service's counters, by service id.
#[derive(Debug, Default)]
pub struct UsageRegistry {
    services: Mutex<HashMap<String, Arc<UsageCounters>>>,
}

impl UsageRegistry {
    /// The counters of `service`, created on first use (when a snapshot is applied).
    pub fn counters(&self, service: &str) -> Arc<UsageCounters> {
        let mut map = self.services.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(service.to_owned()).or_default().clone()
    }
}

impl UsageSource for UsageRegistry {
    fn take(&self) -> Vec<UsageSample> {
        let map = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<UsageSample> = map
            .iter()
            .map(|(service, c)| c.take(service))
            .filter(|s| !s.is_empty())
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_and_resets_what_was_counted() {
        let reg = UsageRegistry::default();
        let a = reg.counters("a");
        a.record(Served::Hit, 100);
        a.record(Served::Miss, 50);
        a.record(Served::Pass, 7);
        a.received(60);
        reg.counters("b");
        assert_eq!(
            reg.take(),
            vec![UsageSample {
                service: "a".into(),
                requests: 3,
                bytes_out: 157,
                hit_requests: 1,
                hit_bytes_out: 100,
                miss_requests: 1,
                miss_bytes_out: 50,
                bytes_in: 60,
            }]
        );
        assert!(reg.take().is_empty());
    }
}
