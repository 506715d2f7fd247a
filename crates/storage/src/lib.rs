//! Lingjing object storage. This crate holds the storage node: the process on each
//! storage machine that keeps blocks, the pieces objects are cut into, as
//! content-addressed, checksummed files ([`block`]) and serves them over HTTP to the S3
//! gateways ([`node`]); and the gateways' side of it: where a block's replicas go
//! ([`placement`]) and writing and reading them: whole copies ([`replicas`]), or
//! Reed–Solomon shards ([`erasure`] the codec, [`coded`] the shards on the nodes). A block's id is the SHA-256 of its bytes: a write whose bytes do
//! not hash to the id is refused, and every read is checked the same way, so a block that
//! rotted on disk is never served (it is quarantined and counted instead).

pub mod block;
pub mod census;
pub mod coded;
pub mod erasure;
pub mod gateway;
pub mod gc;
pub mod meta;
pub mod node;
pub mod placement;
pub mod rebalance;
pub mod repair;
pub mod replicas;
pub mod scrub;
mod serve;
pub mod usage;

pub use block::{BlockError, BlockId, BlockStore, StoreStatus};
pub use coded::CodedPlaced;
pub use node::{NodeConfig, NodeHandle, start};
pub use placement::NodeRef;
pub use replicas::{Erasure, Placed, Redundancy, ReplicaError, Replicas};
