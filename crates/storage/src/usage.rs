//! Object storage usage for billing, as a gateway sees it: the traffic each bucket takes
//! through this gateway (requests, bytes in and out: counted per request, in memory,
//! [`UsageLedger::count`]), and samples of what each bucket holds (versions, stored bytes,
//! raw disk with copies and shards, and the parity part of it: [`sample`]) taken on
//! 5-minute wall-clock boundaries by the one gateway holding the metadata's `usage` lease.
//! Both wait in the ledger until the gateway's agent takes them to report with its
//! heartbeats (`lingjing_model::snapshot::BucketUsageSource`); the control plane keeps
//! them for billing (`GET /v1/storage/usage`).
//!
//! Only requests that were let in and answered count (a refused one may name any
//! bucket). Bounded: at most [`MAX_TRACKED`] buckets are counted between two drains
//! (requests to more are counted in `dropped`), one waiting entry per bucket, at most
//! [`MAX_WAITING`] entries wait for the agent (the oldest go first), and a report takes
//! at most [`MAX_PER_REPORT`] of each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use lingjing_model::snapshot::{BucketStored, BucketTraffic, BucketUsageSource};
use sqlx::Row;

use crate::erasure;
use crate::meta::{BlockRef, Meta, MetaError};

/// Most distinct buckets counted between two drains.
pub const MAX_TRACKED: usize = 10_000;
/// Most entries (traffic and samples each) waiting for the agent.
pub const MAX_WAITING: usize = 50_000;
/// Most entries (traffic and samples each) in one report: what the control plane takes
/// in one heartbeat; the rest wait for the next.
pub const MAX_PER_REPORT: usize = 10_000;
/// How often stored bytes are sampled, on wall-clock boundaries.
pub const SAMPLE_EVERY_MS: u64 = 5 * 60 * 1000;

/// Requests, bytes in, bytes out.
type Counts = (u64, u64, u64);

/// What a gateway counted and sampled, until its agent takes it.
#[derive(Default)]
pub struct UsageLedger {
    counting: Mutex<HashMap<String, Counts>>,
    traffic: Mutex<Vec<BucketTraffic>>,
    stored: Mutex<Vec<BucketStored>>,
    /// Requests not counted because too many buckets were being counted.
    pub dropped: AtomicU64,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `list` with `more` appended, keeping at most [`MAX_WAITING`] (the newest).
fn append_bounded<T>(list: &mut Vec<T>, more: Vec<T>) {
    list.extend(more);
    if list.len() > MAX_WAITING {
        let excess = list.len() - MAX_WAITING;
        list.drain(..excess);
    }
}

impl UsageLedger {
    /// Counts one request to `bucket`.
    pub fn count(&self, bucket: &str, bytes_in: u64, bytes_out: u64) {
        let mut c = locked(&self.counting);
        let full = c.len() >= MAX_TRACKED;
        match c.get_mut(bucket) {
            Some(e) => {
                e.0 += 1;
                e.1 = e.1.saturating_add(bytes_in);
                e.2 = e.2.saturating_add(bytes_out);
            }
            None if full => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                c.insert(bucket.to_owned(), (1, bytes_in, bytes_out));
            }
        }
    }

    /// Moves what was counted to the report, each bucket with its owner (buckets that do
    /// not exist are left out).
    pub async fn drain(&self, meta: &Meta) -> Result<(), MetaError> {
        let counted = std::mem::take(&mut *locked(&self.counting));
        let mut ready = Vec::with_capacity(counted.len());
        for (bucket, (requests, bytes_in, bytes_out)) in counted {
            if let Some(b) = meta.bucket(&bucket).await? {
                ready.push(BucketTraffic {
                    bucket,
                    tenant: b.tenant,
                    requests,
                    bytes_in,
                    bytes_out,
                });
            }
        }
        // One waiting entry per bucket: traffic drained while the agent could not report
        // is added up, not queued again and again.
        let mut waiting = locked(&self.traffic);
        for t in ready {
            match waiting
                .iter_mut()
                .find(|w| w.bucket == t.bucket && w.tenant == t.tenant)
            {
                Some(w) => {
                    w.requests = w.requests.saturating_add(t.requests);
                    w.bytes_in = w.bytes_in.saturating_add(t.bytes_in);
                    w.bytes_out = w.bytes_out.saturating_add(t.bytes_out);
                }
                None => waiting.push(t),
            }
        }
        let excess = waiting.len().saturating_sub(MAX_WAITING);
        waiting.drain(..excess);
        Ok(())
    }

    /// Adds a sample of what the buckets hold to the report.
    pub fn add_sample(&self, sample: Vec<BucketStored>) {
        append_bounded(&mut locked(&self.stored), sample);
    }
}

/// At most [`MAX_PER_REPORT`] of `list`'s entries, the oldest; the rest stay.
fn take_report<T>(list: &Mutex<Vec<T>>) -> Vec<T> {
    let mut list = locked(list);
    let n = list.len().min(MAX_PER_REPORT);
    list.drain(..n).collect()
}

impl BucketUsageSource for UsageLedger {
    fn take(&self) -> (Vec<BucketTraffic>, Vec<BucketStored>) {
        (take_report(&self.traffic), take_report(&self.stored))
    }
}

/// What every bucket holds now, as the sample at `at_ms`: the versions kept (not delete
/// markers) and parts of unfinished uploads, their bytes, the disk their blocks take
/// (every copy; every data and parity shard) and the parity part of that. A block shared
/// by several versions counts for each, as each is billed.
pub async fn sample(meta: &Meta, at_ms: u64) -> Result<Vec<BucketStored>, MetaError> {
    let pool = meta.pool();
    let mut buckets: HashMap<String, BucketStored> = HashMap::new();
    let mut names = sqlx::query("SELECT name, tenant FROM buckets").fetch(pool);
    while let Some(row) = names.try_next().await? {
        let bucket: String = row.try_get(0)?;
        buckets.insert(
            bucket.clone(),
            BucketStored {
                bucket,
                tenant: row.try_get(1)?,
                at_ms,
                objects: 0,
                stored_bytes: 0,
                raw_bytes: 0,
                parity_bytes: 0,
            },
        );
    }
    drop(names);
    let parse = |blocks: &str| -> Result<Vec<BlockRef>, MetaError> {
        serde_json::from_str(blocks).map_err(|e| MetaError::Corrupt(format!("block map: {e}")))
    };
    for sql in [
        "SELECT bucket, delete_marker, blocks FROM objects",
        "SELECT bucket, delete_marker, blocks FROM versions",
        "SELECT u.bucket, 0, p.blocks FROM parts p JOIN uploads u ON u.upload_id = p.upload_id",
    ] {
        let mut rows = sqlx::query(sql).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let marker: i64 = row.try_get(1)?;
            if marker != 0 {
                continue;
            }
            let bucket: String = row.try_get(0)?;
            let Some(b) = buckets.get_mut(&bucket) else {
                continue;
            };
            b.objects += 1;
            for r in parse(&row.try_get::<String, _>(2)?)? {
                let (raw, parity) = disk_of(&r);
                b.stored_bytes = b.stored_bytes.saturating_add(r.len);
                b.raw_bytes = b.raw_bytes.saturating_add(raw);
                b.parity_bytes = b.parity_bytes.saturating_add(parity);
            }
        }
    }
    let mut out: Vec<BucketStored> = buckets.into_values().collect();
    out.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    Ok(out)
}

/// The disk block `r` takes on the nodes, and the parity part of it.
fn disk_of(r: &BlockRef) -> (u64, u64) {
    match &r.coded {
        None => (r.len.saturating_mul(r.nodes.len() as u64), 0),
        Some(c) => {
            let shard =
                erasure::shard_len(c.code, usize::try_from(r.len).unwrap_or(usize::MAX)) as u64;
            (
                shard.saturating_mul(c.code.total() as u64),
                shard.saturating_mul(c.code.parity() as u64),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_is_bounded() {
        let ledger = UsageLedger::default();
        for i in 0..MAX_TRACKED + 5 {
            ledger.count(&format!("b{i}"), 1, 2);
        }
        ledger.count("b0", 10, 20);
        assert_eq!(ledger.dropped.load(Ordering::Relaxed), 5);
        assert_eq!(locked(&ledger.counting)["b0"], (2, 11, 22));
    }

    #[test]
    fn a_report_takes_at_most_its_share_and_leaves_the_rest() {
        let ledger = UsageLedger::default();
        let sample = |i: usize| BucketStored {
            bucket: format!("b{i}"),
            tenant: "t".into(),
            at_ms: 0,
            objects: 0,
            stored_bytes: 0,
            raw_bytes: 0,
            parity_bytes: 0,
        };
        ledger.add_sample((0..MAX_PER_REPORT + 5).map(sample).collect());
        assert_eq!(ledger.take().1.len(), MAX_PER_REPORT);
        let rest = ledger.take().1;
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[0].bucket, format!("b{MAX_PER_REPORT}"), "oldest first");
        assert!(ledger.take().1.is_empty());
    }

    #[test]
    fn coded_blocks_take_their_shards_and_copies_their_copies() {
        let copies = BlockRef {
            id: "ab".repeat(32),
            len: 1000,
            nodes: vec!["a".into(), "b".into(), "c".into()],
            coded: None,
        };
        assert_eq!(disk_of(&copies), (3000, 0));
        let coded = BlockRef {
            coded: Some(crate::meta::CodedRef {
                codec: erasure::CODEC.into(),
                code: "4+2".parse().expect("code"),
                shards: Vec::new(),
            }),
            len: 4000,
            nodes: Vec::new(),
            ..copies
        };
        assert_eq!(disk_of(&coded), (6000, 2000));
    }
}
