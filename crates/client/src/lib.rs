//! The client side of the control plane: [`Client`], the typed REST client the CLI uses,
//! and [`agent`], the loop every data plane shares (register, heartbeat, long-poll
//! snapshots, keep the last good one on disk, hand each new version to the data plane,
//! acknowledge what was applied).

pub mod agent;
pub mod error;
pub mod forward;
pub mod fs;
pub mod meter;
pub mod outbox;
pub mod rest;

pub use agent::{Agent, AgentConfig, AgentHandle};
pub use error::ClientError;
pub use lingjing_model::snapshot::UsageSource;
pub use rest::Client;
