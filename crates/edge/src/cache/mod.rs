//! HTTP caching: the RFC 9111 policy (`policy`), cache keys (`key`), stored objects and
//! their storage (`store`), and request collapsing (`fill`): concurrent misses for one key
//! share one upstream fetch and read the response as it streams in. The storage tiers:
//! memory (`store::MemoryStore`), local disk (`disk`, checksummed files, S3-FIFO) and both
//! together (`hybrid`).

pub mod disk;
pub mod fill;
pub mod hybrid;
pub mod key;
pub mod policy;
pub mod store;
