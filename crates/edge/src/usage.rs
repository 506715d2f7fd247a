//! Per-service traffic counters (requests and body bytes sent, by cache hit, miss or pass;
//! body bytes received), one set per local address the node was reached on (the control
//! plane knows which line each address is on), counted lock-free on the hot path and
//! taken by the agent to report to the control plane with each heartbeat. Body bytes are
//! counted as a body is written or read (`crate::body::counted`), so a chunked response
//! counts and an aborted one counts what was sent.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

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
            address: None,
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

/// Local addresses one service keeps counters for; past them (a node with more
/// addresses than that), the rest share the counters of `::` (no line known).
pub const MAX_ADDRESSES: usize = 64;

/// One service's counters, one set per local address the node was reached on.
#[derive(Debug, Default)]
pub struct ServiceUsage {
    by_address: ArcSwap<Vec<(IpAddr, Arc<UsageCounters>)>>,
    adding: Mutex<()>,
}

impl ServiceUsage {
    /// The counters of requests that reached this node at `local` (created on first
    /// use; reads take no lock).
    pub fn at(&self, local: IpAddr) -> Arc<UsageCounters> {
        let find = |list: &[(IpAddr, Arc<UsageCounters>)], a: IpAddr| {
            list.iter().find(|(x, _)| *x == a).map(|(_, c)| c.clone())
        };
        if let Some(c) = find(&self.by_address.load(), local) {
            return c;
        }
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let list = self.by_address.load();
        if let Some(c) = find(&list, local) {
            return c;
        }
        let key = if list.len() < MAX_ADDRESSES {
            local
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        if let Some(c) = find(&list, key) {
            return c;
        }
        let counters = Arc::new(UsageCounters::default());
        let mut next = (**list).clone();
        next.push((key, counters.clone()));
        self.by_address.store(Arc::new(next));
        counters
    }

    /// What was counted since the last take, summed over addresses (counters kept).
    pub fn counted(&self, service: &str) -> UsageSample {
        let mut sum = UsageSample {
            service: service.to_owned(),
            ..UsageSample::default()
        };
        for (_, c) in self.by_address.load().iter() {
            sum.add(&c.counted(service));
        }
        sum
    }

    /// What was counted since the last call, one sample per address (counters reset).
    fn take(&self, service: &str) -> Vec<UsageSample> {
        self.by_address
            .load()
            .iter()
            .map(|(address, c)| UsageSample {
                address: Some(*address),
                ..c.take(service)
            })
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Every service's counters, by service id.
#[derive(Debug, Default)]
pub struct UsageRegistry {
    services: Mutex<HashMap<String, Arc<ServiceUsage>>>,
}

impl UsageRegistry {
    /// The counters of `service`, created on first use (when a snapshot is applied).
    pub fn counters(&self, service: &str) -> Arc<ServiceUsage> {
        let mut map = self.services.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(service.to_owned()).or_default().clone()
    }
}

impl UsageSource for UsageRegistry {
    fn take(&self) -> Vec<UsageSample> {
        let map = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<UsageSample> = map
            .iter()
            .flat_map(|(service, c)| c.take(service))
            .collect();
        out.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_local_address_counts_apart_up_to_the_limit() {
        let service = ServiceUsage::default();
        let a: IpAddr = "10.0.0.1".parse().expect("addr");
        let b: IpAddr = "2001:db8::1".parse().expect("addr");
        service.at(a).record(Served::Hit, 10);
        service.at(b).record(Served::Miss, 20);
        service.at(a).record(Served::Hit, 1);
        let taken = service.take("s");
        let got: Vec<(Option<IpAddr>, u64, u64)> = taken
            .iter()
            .map(|s| (s.address, s.requests, s.bytes_out))
            .collect();
        assert_eq!(got, [(Some(a), 2, 11), (Some(b), 1, 20)]);
        // Past the limit, further addresses share the `::` counters.
        for i in 0..(MAX_ADDRESSES as u32 + 5) {
            service
                .at(IpAddr::from(std::net::Ipv4Addr::from(0x0a01_0000 + i)))
                .request(Served::Pass);
        }
        // a and b hold 2 of the places (nothing counted there since the take): 62 more
        // addresses get their own, the other 7 share `::`.
        let taken = service.take("s");
        assert_eq!(taken.len(), MAX_ADDRESSES - 2 + 1);
        let shared = taken
            .iter()
            .find(|s| s.address == Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
            .expect("the shared counters");
        assert_eq!(shared.requests, 7);
    }

    #[test]
    fn take_returns_and_resets_what_was_counted() {
        let reg = UsageRegistry::default();
        let local: IpAddr = "10.0.0.1".parse().expect("addr");
        let a = reg.counters("a").at(local);
        a.record(Served::Hit, 100);
        a.record(Served::Miss, 50);
        a.record(Served::Pass, 7);
        a.received(60);
        reg.counters("b");
        assert_eq!(
            reg.take(),
            vec![UsageSample {
                service: "a".into(),
                address: Some(local),
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
