//! Nodes: servers at a site, with their roles, ports, capacity and drained flag. Their
//! addresses come from IP pools (see `pool`), their health from heartbeats and probes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_unique};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Slug, e.g. `wuxi-1-a`.
    pub id: String,
    /// The site the node is at.
    pub site: String,
    /// What the node does.
    pub roles: Vec<NodeRole>,
    #[serde(default)]
    pub ports: NodePorts,
    /// The share of traffic the node can take, in Mbit/s (0: unlimited).
    #[serde(default)]
    pub capacity_mbps: u64,
    /// A drained node finishes its in-flight work but is handed no new clients.
    #[serde(default)]
    pub drained: bool,
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Caches and serves tenants' sites to clients.
    Edge,
    /// A regional cache that edge nodes fill from.
    Parent,
    /// Answers GSLB DNS queries.
    Dns,
    /// Holds objects' blocks (object storage).
    Storage,
    /// Runs an S3 gateway over the storage nodes.
    S3,
    /// Runs edge AI models (inference next to the cameras).
    Aiot,
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeRole::Edge => "edge",
            NodeRole::Parent => "parent",
            NodeRole::Dns => "dns",
            NodeRole::Storage => "storage",
            NodeRole::S3 => "s3",
            NodeRole::Aiot => "aiot",
        })
    }
}

/// The ports a node serves on, on each of its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePorts {
    pub http: u16,
    pub https: u16,
    /// Admin port: `/healthz` and `/metrics`.
    pub admin: u16,
}

impl Default for NodePorts {
    fn default() -> Self {
        Self {
            http: 8080,
            https: 8443,
            admin: 9090,
        }
    }
}

impl Validate for Node {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("site", &self.site)?;
        if self.roles.is_empty() {
            return Err(ValidationError::new(
                "roles",
                "a node needs at least one role (edge, parent, dns, storage, s3, aiot)",
            ));
        }
        check_unique("roles", &self.roles)?;
        for (name, port) in [
            ("ports.http", self.ports.http),
            ("ports.https", self.ports.https),
            ("ports.admin", self.ports.admin),
        ] {
            if port == 0 {
                return Err(ValidationError::new(
                    name,
                    "must be a port number from 1 to 65535",
                ));
            }
        }
        Ok(())
    }
}
