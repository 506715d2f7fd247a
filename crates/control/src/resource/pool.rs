//! IP pools: a site's (and optionally a line's) CIDR, viewed with how much is allocated;
//! pools must not overlap, and a change must keep every allocation inside the pool and
//! at its site.

use lingjing_model::{IpPool, Line, Site};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::{ApiError, StoreError};
use crate::store::{ipam, list_docs};

/// A pool with how much of it is used.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolView {
    #[serde(flatten)]
    pub pool: IpPool,
    pub allocated: u64,
    pub capacity: u64,
}

impl Resource for IpPool {
    const KIND: &'static str = "pool";
    const PLURAL: &'static str = "pools";
    const TABLE: &'static str = "ip_pools";
    type View = PoolView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("site_id", Some(self.site.clone())),
            ("line_id", self.line.clone()),
        ]
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![reference::<Site>("site", &self.site)];
        refs.extend(self.line.iter().map(|l| reference::<Line>("line", l)));
        refs
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        // An address in two pools could be handed to two nodes.
        for other in list_docs::<IpPool>(&mut *conn).await? {
            let overlap = other.cidr.contains(&self.cidr.network())
                || self.cidr.contains(&other.cidr.network());
            if other.id != self.id && overlap {
                return Err(ApiError::Conflict {
                    code: "pool_overlap",
                    message: format!(
                        "{} overlaps pool `{}` ({}): pools must not share addresses",
                        self.cidr, other.id, other.cidr
                    ),
                    field: Some("cidr".into()),
                });
            }
        }
        let moved = ipam::pool_allocation_elsewhere(&mut *conn, &self.id, &self.site).await?;
        if let Some((address, node)) = moved {
            return Err(ApiError::Conflict {
                code: "in_use",
                message: format!(
                    "{address} of pool `{}` is allocated to node `{node}`, which is not at site `{}`; release it first",
                    self.id, self.site
                ),
                field: Some("site".into()),
            });
        }
        for addr in ipam::pool_addresses(conn, &self.id).await? {
            let ok = addr
                .parse()
                .is_ok_and(|a| lingjing_model::ipam::is_assignable(self, a));
            if !ok {
                return Err(ApiError::conflict(
                    "in_use",
                    format!(
                        "{addr} is allocated from pool `{}` and would fall outside it; release it first",
                        self.id
                    ),
                ));
            }
        }
        Ok(())
    }
    async fn before_delete(conn: &mut AnyConnection, id: &str) -> Result<(), ApiError> {
        let n = ipam::allocation_count(conn, id).await?;
        if n > 0 {
            return Err(ApiError::conflict(
                "in_use",
                format!(
                    "pool `{id}` still has {n} allocated addresses; release them first (lingjing pool release)"
                ),
            ));
        }
        Ok(())
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let counts = ipam::allocation_counts(conn).await?;
        Ok(items
            .into_iter()
            .map(|pool| PoolView {
                allocated: counts.get(&pool.id).copied().unwrap_or(0),
                capacity: lingjing_model::ipam::capacity(&pool),
                pool,
            })
            .collect())
    }
}
