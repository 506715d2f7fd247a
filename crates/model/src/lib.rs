//! Lingjing's domain model: the resources the control plane holds (regions, lines, sites,
//! nodes, IP pools, tenants, services, static DNS records), their validation, the snapshots the data planes
//! receive, and the client classifier (client IP -> line and region).
//!
//! Invariant: no I/O and no async here. Everything is plain data and pure functions, so
//! the control plane, the data planes and the CLI share one definition of each type.

pub mod aiot;
pub mod artifact;
pub mod classify;
pub mod colocation;
pub mod defence;
pub mod erasure;
pub mod ident;
pub mod inspect;
pub mod ipam;
pub mod line;
pub mod metering;
pub mod monitor;
pub mod node;
pub mod origin_policy;
pub mod pool;
pub mod purge;
pub mod record;
pub mod region;
pub mod service;
pub mod sigv4;
pub mod site;
pub mod snapshot;
pub mod storage_layout;
pub mod tenant;
pub mod units;
pub mod validate;

pub use erasure::ErasureCode;
pub use line::{Line, LinePrefix};
pub use node::{Node, NodePorts, NodeRole};
pub use origin_policy::{CompiledOriginPolicy, OriginPolicy, OriginRefused};
pub use pool::{Allocation, IpPool};
pub use purge::{Purge, PurgeKind, PurgeMode, PurgeRequest};
pub use record::{DnsRecord, RecordType, RecordValue};
pub use region::{Region, RegionLevel, Tier};
pub use service::{CacheRule, Origin, Service, SteeringPolicy, TlsCertificate};
pub use site::Site;
pub use snapshot::{DnsSnapshot, EdgeSnapshot, NodeInfo, Role, Snapshot};
pub use tenant::Tenant;
pub use validate::{Validate, ValidationError};
