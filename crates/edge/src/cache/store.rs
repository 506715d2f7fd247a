//! Stored responses and the storage behind a narrow trait.
//!
//! An entry is everything cached under one primary key (host + path + query, shaped by the
//! service's cache rules): the `Vary` field names the origin sent and up to
//! [`MAX_VARIANTS`] variants, each a complete response (head and body). Entries are
//! immutable and shared (`Arc`): a change (a new variant, a 304 refresh, a soft purge)
//! stores a new entry, so readers never see a half-written one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use super::policy::Freshness;

/// Most variants kept per URL (`Vary`); the least recently stored one goes first.
pub const MAX_VARIANTS: usize = 8;

/// One stored response.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    pub status: StatusCode,
    /// End-to-end headers as received (hop-by-hop ones removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    pub freshness: Freshness,
    /// The vary signature of the request that produced it.
    pub variant: String,
    /// `Surrogate-Key` / `Cache-Tag` values, for purge by tag.
    pub tags: Vec<String>,
    /// When it was stored.
    pub stored_at: SystemTime,
}

impl CachedResponse {
    /// Bytes this response takes, roughly.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 256
    }
}

/// Everything stored under one primary key.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `Vary` field names of the latest response (empty: one variant).
    pub vary: Vec<HeaderName>,
    /// Newest last.
    pub variants: Vec<Arc<CachedResponse>>,
}

impl Entry {
    pub fn single(response: CachedResponse) -> Entry {
        Entry {
            vary: Vec::new(),
            variants: vec![Arc::new(response)],
        }
    }

    /// The variant stored for `signature`.
    pub fn variant(&self, signature: &str) -> Option<&Arc<CachedResponse>> {
        self.variants.iter().rev().find(|v| v.variant == signature)
    }

    /// This entry with `response` added (replacing the same variant), under `vary`.
    /// A change of the Vary fields drops the variants stored under the old ones.
    pub fn with_variant(&self, vary: Vec<HeaderName>, response: CachedResponse) -> Entry {
        let mut variants: Vec<Arc<CachedResponse>> = if vary == self.vary {
            self.variants
                .iter()
                .filter(|v| v.variant != response.variant)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        variants.push(Arc::new(response));
        if variants.len() > MAX_VARIANTS {
            variants.drain(..variants.len() - MAX_VARIANTS);
        }
        Entry { vary, variants }
    }

    pub fn weight(&self) -> usize {
        self.variants.iter().map(|v| v.weight()).sum::<usize>() + 64
    }
}

/// Where entries live. Implementations must be safe to share between threads.
pub trait Storage: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<Arc<Entry>>;
    fn put(&self, key: String, entry: Arc<Entry>);
    fn remove(&self, key: &str);
    /// Every key, for purges by prefix or tag.
    fn keys(&self) -> Vec<Arc<String>>;
    /// Bytes and entries held.
    fn usage(&self) -> (u64, u64);
    /// Entries evicted for room since start.
    fn evictions(&self) -> u64;
}

/// The memory tier: a size-bounded map with moka's TinyLFU admission and eviction, so one
/// scan of cold objects cannot flush the hot set.
pub struct MemoryStore {
    cache: moka::sync::Cache<String, Arc<Entry>>,
    evictions: Arc<AtomicU64>,
}

impl MemoryStore {
    /// A store holding at most `capacity_bytes` of responses.
    pub fn new(capacity_bytes: u64) -> MemoryStore {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = evictions.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_k: &String, v: &Arc<Entry>| u32::try_from(v.weight()).unwrap_or(u32::MAX))
            .eviction_listener(move |_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        MemoryStore { cache, evictions }
    }
}

impl Storage for MemoryStore {
    fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    fn put(&self, key: String, entry: Arc<Entry>) {
        self.cache.insert(key, entry);
    }

    fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    fn keys(&self) -> Vec<Arc<String>> {
        self.cache.iter().map(|(k, _)| k).collect()
    }

    fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.weighted_size(), self.cache.entry_count())
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}
