//! Stored responses and the storage behind a narrow trait.
//!
//! An entry is everything cached under one primary key (the service and scheme, then the
//! host, path and query shaped by the service's cache rules: `super::key`): the `Vary`
//! field names the origin sent and up to
//! [`MAX_VARIANTS`] variants, each a complete response (head and body). Entries are
//! immutable and shared (`Arc`): a change (a new variant, a 304 refresh, a soft purge)
//! stores a new entry, so readers never see a half-written one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::index::{PurgeIndex, entry_tags};
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
    /// Bytes this response takes in memory, roughly: the body, every header (with a
    /// per-field overhead), the variant signature and the tags.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        self.body.len() + headers + self.variant.len() + tags + 256
    }

    /// This response with header values of its own. A value hyper parsed is a slice of
    /// the connection's read buffer (8 KiB or more): stored as is, it would keep that
    /// whole buffer alive for as long as the entry lives, unseen by [`weight`] (measured:
    /// 1.3 GB resident for a 256 MiB memory cache after 110k misses of 1 KiB).
    ///
    /// [`weight`]: CachedResponse::weight
    pub fn detached(mut self) -> CachedResponse {
        self.headers = detached_headers(&self.headers);
        self
    }
}

/// `headers` with every value copied into an allocation of its own (see
/// [`CachedResponse::detached`]).
pub fn detached_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
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

    /// Bytes this entry takes in memory, roughly: every variant and the `Vary` names.
    pub fn weight(&self) -> usize {
        let vary: usize = self.vary.iter().map(|n| n.as_str().len() + 24).sum();
        self.variants.iter().map(|v| v.weight()).sum::<usize>() + vary + 64
    }
}

/// Where entries live. Implementations must be safe to share between threads.
pub trait Storage: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<Arc<Entry>>;
    fn put(&self, key: String, entry: Arc<Entry>);
    fn remove(&self, key: &str);
    /// Every key (a flush).
    fn keys(&self) -> Vec<Arc<String>>;
    /// The keys in a host bucket (`key::host_bucket(service, host)`: a service's keys for
    /// one host, both schemes), from the purge index: purges by URL or prefix,
    /// invalidations, dropping an object's slices.
    fn host_keys(&self, bucket: &str) -> Vec<Arc<String>>;
    /// The keys in a tag bucket (`key::tag_bucket(service, tag)`), from the purge index.
    fn tag_keys(&self, bucket: &str) -> Vec<Arc<String>>;
    /// Bytes and entries held.
    fn usage(&self) -> (u64, u64);
    /// Entries evicted for room since start.
    fn evictions(&self) -> u64;
}

/// How many stripes the memory tier's put locks and purge index have. A key's put lock
/// and index stripe are the same. Striping the index keeps its hash tables small: a
/// growing table is rehashed under its lock, and one table of every key rehashed 130k+
/// entries at once, stalling every request of both cores for ~10 ms (the miss path's p99).
const STRIPES: usize = 64;

/// The memory tier: a size-bounded map with moka's TinyLFU admission and eviction, so one
/// scan of cold objects cannot flush the hot set, and the purge index of what it holds.
///
/// An entry's weight ([`MemoryStore::weigh`]) counts the key (held twice: by the map and
/// by the index), the entry ([`Entry::weight`]) and the index's copy of its tags, so
/// long URLs or many tags cannot hold more memory than the capacity says.
///
/// Index consistency: each put takes a generation number; the index (in [`STRIPES`]
/// stripes by key) records the
/// generation of the key's latest put, and moka's removal listener (evictions, admission
/// refusals, explicit removals, replacements) drops a key from the index only when the
/// removed value carries the recorded generation. Puts of one key are serialised (a
/// striped lock) so the map and the index always agree on the latest.
pub struct MemoryStore {
    cache: moka::sync::Cache<String, Stored>,
    index: Arc<[Mutex<MemoryIndex>]>,
    put_locks: Vec<Mutex<()>>,
    next_generation: AtomicU64,
    evictions: Arc<AtomicU64>,
}

/// A value of the memory tier: the entry and the generation of its put.
#[derive(Clone)]
struct Stored {
    generation: u64,
    entry: Arc<Entry>,
}

#[derive(Default)]
struct MemoryIndex {
    /// Key -> generation of its latest put and the tags it was indexed with.
    records: HashMap<Arc<String>, (u64, Box<[String]>)>,
    purge: PurgeIndex,
}

impl MemoryIndex {
    fn forget(&mut self, key: &str, generation: u64) {
        let owned = key.to_owned();
        if self
            .records
            .get(&owned)
            .is_some_and(|(g, _)| *g == generation)
            && let Some((_, tags)) = self.records.remove(&owned)
        {
            self.purge.remove(key, &tags);
        }
    }
}

impl MemoryStore {
    /// A store holding at most `capacity_bytes` of entries (as [`MemoryStore::weigh`]
    /// counts them).
    pub fn new(capacity_bytes: u64) -> MemoryStore {
        let evictions = Arc::new(AtomicU64::new(0));
        let index: Arc<[Mutex<MemoryIndex>]> = (0..STRIPES).map(|_| Mutex::default()).collect();
        let counter = evictions.clone();
        let listener_index = index.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .initial_capacity(expected_entries(capacity_bytes))
            .weigher(|k: &String, v: &Stored| {
                u32::try_from(MemoryStore::weigh(k, &v.entry)).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |k: Arc<String>, v: Stored, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                lock(&listener_index[stripe(&k)]).forget(&k, v.generation);
            })
            .build();
        MemoryStore {
            cache,
            index,
            put_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            next_generation: AtomicU64::new(1),
            evictions,
        }
    }

    /// The bytes an entry under `key` is accounted for: the entry, the key twice (map and
    /// index) and the tags once more (the index's record).
    pub fn weigh(key: &str, entry: &Entry) -> usize {
        let tags: usize = entry
            .variants
            .iter()
            .flat_map(|v| v.tags.iter())
            .map(|t| t.len() + 24)
            .sum();
        entry.weight() + 2 * key.len() + tags + 128
    }

    /// Keys in the purge index (for tests and metrics: equals the entries held once
    /// moka's pending work has run).
    pub fn indexed_keys(&self) -> usize {
        self.cache.run_pending_tasks();
        self.index.iter().map(|i| lock(i).records.len()).sum()
    }

    fn put_lock(&self, stripe: usize) -> std::sync::MutexGuard<'_, ()> {
        self.put_locks[stripe]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Entries the map is sized for at start: a full tier of 2 KiB entries (a small object
/// with its headers and key), at most 4 Mi. Sized up front, the map does not rehash
/// everything it holds while the tier fills (moka's rehash was ~2 % of the miss path's
/// CPU); the cost is the table, allocated at start (3.5 MiB more resident for a 256 MiB
/// tier, 1.4 %).
fn expected_entries(capacity_bytes: u64) -> usize {
    usize::try_from(capacity_bytes / 2048)
        .unwrap_or(usize::MAX)
        .min(4 << 20)
}

/// The stripe of `key` (its put lock and its part of the index).
fn stripe(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

fn lock(index: &Mutex<MemoryIndex>) -> std::sync::MutexGuard<'_, MemoryIndex> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Storage for MemoryStore {
    fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key).map(|s| s.entry)
    }

    fn put(&self, key: String, entry: Arc<Entry>) {
        let stripe = stripe(&key);
        let _serial = self.put_lock(stripe);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(key.clone());
        let tags = entry_tags(&entry);
        {
            let mut index = lock(&self.index[stripe]);
            if let Some((_, old)) = index
                .records
                .insert(shared.clone(), (generation, tags.clone()))
            {
                index.purge.remove(&key, &old);
            }
            index.purge.insert(&shared, &tags);
        }
        self.cache.insert(key, Stored { generation, entry });
    }

    fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    fn keys(&self) -> Vec<Arc<String>> {
        self.cache.iter().map(|(k, _)| k).collect()
    }

    fn host_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        self.index
            .iter()
            .flat_map(|i| lock(i).purge.host_keys(bucket))
            .collect()
    }

    fn tag_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        self.index
            .iter()
            .flat_map(|i| lock(i).purge.tag_keys(bucket))
            .collect()
    }

    fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.weighted_size(), self.cache.entry_count())
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_headers_keep_no_part_of_the_buffer_they_were_parsed_from() {
        // As hyper hands them over: values are slices of the connection's read buffer.
        let buffer = Bytes::from(vec![b'a'; 64 * 1024]);
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_maybe_shared(buffer.slice(0..5)).expect("valid value");
        headers.append(http::header::ETAG, value.clone());
        headers.append(http::header::ETAG, value);
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, secret);

        let detached = detached_headers(&headers);
        drop(headers);
        assert!(
            buffer.is_unique(),
            "a stored header still refers to the read buffer"
        );
        assert_eq!(detached.get_all(http::header::ETAG).iter().count(), 2);
        assert_eq!(detached[http::header::ETAG], "aaaaa");
        assert!(detached[http::header::AUTHORIZATION].is_sensitive());
    }
}
