//! IPAM endpoints: allocate an address of a pool to a node, list and release allocations.
//! Allocation runs inside a write transaction (serialised on both backends), and the
//! primary key (pool, address) backs it up: no address is ever handed out twice.

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use lingjing_model::{Allocation, IpPool, Node};
use serde::Deserialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{ApiJson, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{get_doc, ipam};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/pools/{id}/allocations", get(list).post(allocate))
        .route("/v1/pools/{id}/allocations/{address}", delete(release))
}

/// Request to allocate an address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    /// The node that gets the address (at the pool's site).
    pub node: String,
    /// A specific address to take; the lowest free one when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub address: Option<IpAddr>,
}

async fn pool_or_404(conn: &mut AnyConnection, id: &str) -> Result<IpPool, ApiError> {
    get_doc::<IpPool>(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("pool", id))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<Allocation>>, ApiError> {
    caller.require_operator()?;
    let mut conn = state.store.pool().acquire().await?;
    pool_or_404(&mut conn, &id).await?;
    Ok(Json(ipam::allocations(&mut conn, &id).await?))
}

async fn allocate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AllocateRequest>,
) -> Result<(StatusCode, Json<Allocation>), ApiError> {
    caller.require_operator()?;
    let mut w = state.store.write(true).await?;
    let pool = pool_or_404(&mut w.tx, &id).await?;
    let node = get_doc::<Node>(&mut w.tx, &req.node)
        .await?
        .ok_or_else(|| ApiError::invalid("node", format!("node `{}` does not exist", req.node)))?;
    if node.site != pool.site {
        return Err(ApiError::invalid(
            "node",
            format!(
                "node `{}` is at site `{}` but pool `{}` belongs to site `{}`: use a pool of the node's site",
                node.id, node.site, pool.id, pool.site
            ),
        ));
    }
    let taken: BTreeSet<IpAddr> = ipam::allocations(&mut w.tx, &id)
        .await?
        .into_iter()
        .map(|a| a.address)
        .collect();
    let address = match req.address {
        Some(a) if !lingjing_model::ipam::is_assignable(&pool, a) => {
            return Err(ApiError::invalid(
                "address",
                format!("{a} cannot be handed out from pool `{}` ({}): outside it, reserved, or its network/broadcast address", pool.id, pool.cidr),
            ));
        }
        Some(a) if taken.contains(&a) => {
            return Err(ApiError::Conflict {
                code: "address_taken",
                message: format!("{a} is already allocated; release it first or omit `address`"),
                field: Some("address".into()),
            });
        }
        Some(a) => a,
        None => lingjing_model::ipam::first_free(&pool, &taken).ok_or_else(|| {
            ApiError::conflict(
                "pool_exhausted",
                format!(
                    "pool `{}` ({}) has no free address left ({} allocated): release one, or add a pool to site `{}`",
                    pool.id,
                    pool.cidr,
                    taken.len(),
                    pool.site
                ),
            )
        })?,
    };
    let allocation = Allocation {
        pool: pool.id.clone(),
        address,
        node: node.id.clone(),
        allocated_at: crate::time::now_rfc3339(),
    };
    ipam::insert_allocation(&mut w.tx, &allocation).await?;
    state.published(w.commit().await?);
    tracing::info!(pool = %allocation.pool, address = %allocation.address, node = %allocation.node, "allocated");
    Ok((StatusCode::CREATED, Json(allocation)))
}

async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    let addr: IpAddr = address
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{address}` is not an IP address")))?;
    let mut w = state.store.write(true).await?;
    pool_or_404(&mut w.tx, &id).await?;
    if !ipam::delete_allocation(&mut w.tx, &id, addr).await? {
        return Err(ApiError::NotFound(format!(
            "{addr} is not allocated from pool `{id}`"
        )));
    }
    state.published(w.commit().await?);
    Ok(StatusCode::NO_CONTENT)
}
