//! HTTP caching: the RFC 9111 policy (`policy`), cache keys (`key`), stored objects and
//! their storage (`store`), the purge indexes of each tier (`index`), and request
//! collapsing (`fill`): concurrent misses for one key share one upstream fetch and read
//! the response as it streams in. The storage tiers: memory (`store::MemoryStore`), local
//! disk (`disk`, checksummed files, evicted by the S3-FIFO policy of `eviction`) and both
//! together (`hybrid`). The node-wide budget of the copies fills keep to store bodies:
//! `budget`.

pub mod budget;
pub mod disk;
pub mod eviction;
pub mod fill;
pub mod hybrid;
pub mod index;
pub mod key;
pub mod policy;
pub mod store;

/// Resource bounds of the cache, set per node ([`crate::EdgeConfig::cache_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Longest request target (path and query, in bytes) whose response is cached; longer
    /// ones are passed through unstored. Default [`CacheLimits::DEFAULT_MAX_URL_BYTES`].
    pub max_url_bytes: usize,
    /// Most body bytes a shared fill keeps in memory for the clients reading it
    /// ([`fill`]); past it, clients that come later fetch on their own. Default
    /// [`CacheLimits::DEFAULT_FILL_BUFFER_BYTES`].
    pub fill_buffer_bytes: u64,
    /// Most bytes all fills together keep to store their bodies ([`budget`]: the copy of
    /// a whole object, or of one slice, until it is stored); past it, a fill's response is
    /// still streamed to its clients in full but not stored. Default
    /// [`CacheLimits::DEFAULT_STORE_BUFFER_BYTES`].
    pub store_buffer_bytes: u64,
}

impl CacheLimits {
    /// 8 KiB, as nginx's default `large_client_header_buffers` line.
    pub const DEFAULT_MAX_URL_BYTES: usize = 8 * 1024;
    /// 8 MiB.
    pub const DEFAULT_FILL_BUFFER_BYTES: u64 = 8 * 1024 * 1024;
    /// 256 MiB (four objects of `proxy::MAX_OBJECT_BYTES` at once).
    pub const DEFAULT_STORE_BUFFER_BYTES: u64 = 256 * 1024 * 1024;
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_url_bytes: Self::DEFAULT_MAX_URL_BYTES,
            fill_buffer_bytes: Self::DEFAULT_FILL_BUFFER_BYTES,
            store_buffer_bytes: Self::DEFAULT_STORE_BUFFER_BYTES,
        }
    }
}
