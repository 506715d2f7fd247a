//! The Lingjing control plane: the only writer of desired state.
//!
//! It holds the inventory (regions, lines, sites, nodes, IP pools), tenants and their
//! services in a SQL store (SQLite by default, PostgreSQL in production), serves the REST
//! API under `/v1` with its OpenAPI document, hands out IP addresses (IPAM), and builds the
//! versioned snapshots that data planes long-poll.
//!
//! Invariants: every write runs in one transaction that first bumps the configuration
//! version (which serialises writers on both backends); snapshots are built from one
//! consistent read; data planes never see the database.

pub mod api;
pub mod auth;
pub mod billing;
pub mod bucket_origins;
pub mod challenge;
pub mod context;
pub mod defence;
pub mod error;
pub mod evidence;
pub mod health;
pub mod hostnames;
pub mod inspection;
pub mod listener;
pub mod metering;
pub mod origins;
pub mod platform_alerts;
pub mod policy;
pub mod resource;
pub mod rollout;
pub mod rollout_driver;
pub mod server;
pub mod sla;
pub mod snapshot;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod time;

pub use error::{ApiError, StoreError};
pub use policy::TrustPolicy;
pub use server::{ControlConfig, ControlHandle, serve, serve_with};
pub use store::Store;
