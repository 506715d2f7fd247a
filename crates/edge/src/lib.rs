//! The Lingjing edge node: a caching reverse proxy for tenants' sites, configured by the
//! edge snapshot from the control plane.
//!
//! Start with `proxy.rs`: the request lifecycle, phase by phase. Around it: `routes`
//! (Host -> service, per snapshot), `cache` (RFC 9111 policy, keys, storage, request
//! collapsing), `fetch` (a fill's upstream fetch, 304 merge and body pump, shared by whole
//! objects and slices), `upstream` (parent tier, origins, pooling, retries), `range` (byte
//! ranges), `slice` (large objects in slices), `server` (listeners, admin `/healthz` and
//! `/metrics`), `tls` (certificates by SNI), `node` (shared state, snapshot application),
//! `metrics` (Prometheus), `guard` (origin policy at connect time, loop detection),
//! `limits` (connection and HTTP server limits), `sendfile` (large cached bodies sent
//! without copying), `relay` (the platform's artefacts carried to its nodes).

pub mod body;
pub mod cache;
pub mod cores;
pub mod defence;
mod fetch;
pub mod guard;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod purge;
pub mod range;
pub mod relay;
pub mod routes;
pub mod sendfile;
pub mod server;
pub mod slice;
pub mod tls;
pub mod upstream;
pub mod usage;

pub use node::{Edge, EdgeConfig};
pub use server::{EdgeHandle, start};
