//! Per-service traffic counters (requests, body bytes sent), counted lock-free on the hot
//! path and taken by the agent to report to the control plane with each heartbeat. Body
//! bytes are counted as the response body is written (`crate::body::counted`), so a
//! chunked response counts and an aborted one counts what was sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lingjing_model::snapshot::UsageSample;
use lingjing_model::snapshot::UsageSource;

/// The counters of one service.
#[derive(Debug, Default)]
pub struct UsageCounters {
    pub requests: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl UsageCounters {
    /// Counts a request and `bytes_out` body bytes sent.
    pub fn record(&self, bytes_out: u64) {
        self.request();
        self.sent(bytes_out);
    }

    /// Counts a request (its body bytes are counted as they are sent: [`Self::sent`]).
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts body bytes written to a client.
    pub fn sent(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
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
            .filter_map(|(service, c)| {
                let requests = c.requests.swap(0, Ordering::Relaxed);
                let bytes_out = c.bytes_out.swap(0, Ordering::Relaxed);
                (requests > 0 || bytes_out > 0).then(|| UsageSample {
                    service: service.clone(),
                    requests,
                    bytes_out,
                })
            })
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
        a.record(100);
        a.record(50);
        reg.counters("b");
        assert_eq!(
            reg.take(),
            vec![UsageSample {
                service: "a".into(),
                requests: 2,
                bytes_out: 150
            }]
        );
        assert!(reg.take().is_empty());
    }
}
