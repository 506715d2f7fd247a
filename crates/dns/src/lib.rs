//! Lingjing's GSLB authoritative DNS server: authoritative for the platform zone (e.g.
//! `cdn.lingjing.test.`) over UDP and TCP, with EDNS(0) and EDNS Client Subnet, answering
//! each service name (`<service id>.<zone>`) per query from the DNS snapshot: the
//! client's line and region pick the nodes, the service's steering policy orders and
//! weighs them, and health and drain decide which may answer.
//!
//! Layers, each usable on its own:
//! - [`gslb`]: the zone and its answers, computed from a snapshot; pure.
//! - [`steer`]: the steering policy applied to one client; pure. Also the
//!   [`Explanation`] of a choice.
//! - [`scope`]: the ECS scope of an answer; pure.
//! - [`wire`]: request bytes to response bytes (hickory-proto); pure.
//! - [`server`]: the UDP and TCP listeners, and [`DnsServer::apply`] for new snapshots.
//! - [`rrl`]: response rate limiting of UDP answers per client network (with slip).
//! - [`metrics`]: Prometheus metrics of the server; [`admin`]: its admin HTTP server
//!   (`/healthz`, `/metrics`, `/explain`).
//!
//! **API boundary:** [`DnsServer::apply`]`(&Snapshot<DnsSnapshot>)`,
//! [`start`]`(&DnsConfig, Arc<DnsServer>)`, and [`DnsServer::explain`].

pub mod admin;
mod fast;
pub mod gslb;
pub mod metrics;
pub mod rrl;
pub mod scope;
pub mod server;
pub mod steer;
pub mod wire;

pub use admin::AdminLimits;
pub use gslb::{BuildError, ClientInfo, Decision, Gslb, Rcode, Rdata};
pub use metrics::DnsMetrics;
pub use rrl::RrlConfig;
pub use server::{DnsConfig, DnsError, DnsHandle, DnsServer, start};
pub use steer::{CandidateView, Explanation, Family, Nearness, Rule};
pub use wire::{Outcome, Transport, respond, respond_traced};
