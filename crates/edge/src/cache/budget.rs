//! The node-wide budget of memory for *store buffers*: the copy of a response body a fill
//! keeps so that it can store it when the body is complete (a whole object up to
//! `proxy::MAX_OBJECT_BYTES`, one slice of a large object). The followers' buffer of a
//! shared fill is bounded per fill (`cache::fill`); this bounds the sum of every fill's
//! store copy, so that many large cacheable URLs fetched at once (by clients that do not
//! read, say) cannot make the node hold `N x MAX_OBJECT_BYTES`.
//!
//! A fill takes a [`StoreBuffer`] and reserves from the [`StoreBudget`] as the buffer grows
//! (its allocated capacity, not more; growth doubles, capped at the announced length).
//! When a reservation does not fit, the buffer is dropped and its bytes released at once:
//! the response still streams to its clients in full, it is only not stored
//! (`lingjing_edge_store_buffer_refused_total`). A buffer releases its reservation when it
//! is dropped, whether the fill completed (the body then belongs to the cache, bounded by
//! its own size) or failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// The store buffers' metrics (shared by the budget and `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct StoreBudgetMeter {
    /// Bytes reserved by store buffers now.
    pub reserved: Gauge,
    /// The most bytes reserved at once since start.
    pub peak: Gauge,
    /// Fills that were not stored because the budget was spent.
    pub refused: Counter,
}

/// The node's budget for store buffers ([`crate::cache::CacheLimits::store_buffer_bytes`]).
#[derive(Debug)]
pub struct StoreBudget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
    meter: StoreBudgetMeter,
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl StoreBudget {
    /// A budget of `limit` bytes, measured into `meter`.
    pub fn new(limit: u64, meter: StoreBudgetMeter) -> StoreBudget {
        StoreBudget {
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            meter,
        }
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The most bytes reserved at once since start (never above [`StoreBudget::limit`]).
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Acquire)
    }

    /// Fills refused so far.
    pub fn refused(&self) -> u64 {
        self.meter.refused.get()
    }

    /// Reserves `n` bytes if they fit in what is left.
    fn try_reserve(&self, n: u64) -> bool {
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            });
        match reserved {
            Ok(before) => {
                let now = before + n;
                self.peak.fetch_max(now, Ordering::AcqRel);
                self.meter.reserved.inc_by(gauge_value(n));
                self.meter
                    .peak
                    .inner()
                    .fetch_max(gauge_value(now), Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self, n: u64) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.meter.reserved.dec_by(gauge_value(n));
        }
    }
}

/// One fill's copy of a body for the store, holding its reservation of the budget.
#[derive(Debug)]
pub struct StoreBuffer {
    budget: Arc<StoreBudget>,
    buf: Vec<u8>,
    /// Bytes reserved: the buffer's capacity.
    reserved: u64,
    /// The length the response announced, if any: the buffer grows no further ahead.
    expected: Option<u64>,
}

impl StoreBuffer {
    /// An empty buffer (nothing reserved yet) for a body of `expected` bytes, if known.
    pub fn new(budget: Arc<StoreBudget>, expected: Option<u64>) -> StoreBuffer {
        StoreBuffer {
            budget,
            buf: Vec::new(),
            reserved: 0,
            expected,
        }
    }

    /// Appends `data`, reserving room first. `false`: the budget has no room for it; the
    /// caller must drop this buffer (which releases what it held) and not store the body.
    #[must_use]
    pub fn push(&mut self, data: &[u8]) -> bool {
        let needed = self.buf.len() as u64 + data.len() as u64;
        if needed > self.reserved {
            // Double, but not past the announced length unless the body is longer.
            let doubled = self.reserved.saturating_mul(2);
            let target = match self.expected {
                Some(e) if needed <= e => doubled.min(e),
                _ => doubled,
            }
            .max(needed);
            let grown = [target, needed]
                .into_iter()
                .find(|cap| self.budget.try_reserve(cap - self.reserved));
            let Some(cap) = grown else {
                self.budget.meter.refused.inc();
                return false;
            };
            let Ok(cap_usize) = usize::try_from(cap) else {
                self.budget.release(cap - self.reserved);
                self.budget.meter.refused.inc();
                return false;
            };
            self.buf.reserve_exact(cap_usize - self.buf.len());
            self.reserved = cap;
        }
        self.buf.extend_from_slice(data);
        true
    }

    /// Bytes buffered.
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The body, for the store; the reservation is released (the cache accounts for the
    /// bytes from now on).
    pub fn into_bytes(mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.buf))
    }
}

impl Drop for StoreBuffer {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64) -> Arc<StoreBudget> {
        Arc::new(StoreBudget::new(limit, StoreBudgetMeter::default()))
    }

    #[test]
    fn buffers_reserve_as_they_grow_and_release_when_dropped() {
        let b = budget(100);
        let mut one = StoreBuffer::new(b.clone(), Some(60));
        for _ in 0..6 {
            assert!(one.push(&[1; 10]));
            assert!(b.used() <= 60, "capped at the announced length");
        }
        assert_eq!((one.len(), b.used()), (60, 60));
        // 40 left: a second buffer fits 40, not 41.
        let mut two = StoreBuffer::new(b.clone(), None);
        assert!(two.push(&[2; 40]));
        assert!(!two.push(&[2; 1]));
        assert_eq!(b.refused(), 1);
        drop(two);
        assert_eq!(b.used(), 60);
        let body = one.into_bytes();
        assert_eq!(body.len(), 60);
        assert_eq!(b.used(), 0);
        assert!(b.peak() <= 100);
    }

    #[test]
    fn a_body_longer_than_announced_or_unannounced_still_respects_the_budget() {
        let b = budget(1000);
        let mut buf = StoreBuffer::new(b.clone(), Some(10));
        assert!(buf.push(&[0; 10]));
        assert!(buf.push(&[0; 5]));
        let mut chunked = StoreBuffer::new(b.clone(), None);
        let mut pushed = 0;
        while chunked.push(&[0; 7]) {
            pushed += 7;
            assert!(b.used() <= 1000);
        }
        assert!(pushed > 0);
        assert!(b.peak() <= 1000);
        drop(chunked);
        drop(buf);
        assert_eq!(b.used(), 0);
    }
}
