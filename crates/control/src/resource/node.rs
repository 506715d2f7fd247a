//! Nodes: at a site, viewed with their allocated addresses and liveness; a node holding
//! addresses of its old site's pools cannot move.

use std::net::IpAddr;

use lingjing_model::snapshot::NodeStatus;
use lingjing_model::{Node, Site};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::{ApiError, StoreError};
use crate::store;

/// A node with its allocated addresses and its liveness.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    /// Addresses allocated to the node from IP pools.
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<IpAddr>,
    pub status: NodeStatus,
}

impl Resource for Node {
    const KIND: &'static str = "node";
    const PLURAL: &'static str = "nodes";
    const TABLE: &'static str = "nodes";
    type View = NodeView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("site_id", Some(self.site.clone()))]
    }
    fn references(&self) -> Vec<Reference> {
        vec![reference::<Site>("site", &self.site)]
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let elsewhere = store::ipam::node_allocation_elsewhere(conn, &self.id, &self.site).await?;
        if let Some((address, pool)) = elsewhere {
            return Err(ApiError::Conflict {
                code: "in_use",
                message: format!(
                    "node `{}` holds {address} from pool `{pool}` of its old site; release it before moving the node (lingjing pool release)",
                    self.id,
                ),
                field: Some("site".into()),
            });
        }
        Ok(())
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let mut addresses = store::ipam::node_addresses(conn).await?;
        let mut statuses = store::node_statuses(conn).await?;
        Ok(items
            .into_iter()
            .map(|node| NodeView {
                addresses: addresses.remove(&node.id).unwrap_or_default(),
                status: statuses.remove(&node.id).unwrap_or_default(),
                node,
            })
            .collect())
    }
}
