//! HTTP caching: the RFC 9111 policy (`policy`), cache keys (`key`), stored objects and
//! their storage (`store`), and request collapsing (`fill`): concurrent misses for one key
//! share one upstream fetch and read the response as it streams in.

pub mod fill;
pub mod key;
pub mod policy;
pub mod store;
