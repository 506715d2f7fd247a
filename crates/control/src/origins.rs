//! Where tenants' origins may point, as the control plane decides it: the
//! [`OriginPolicy`] handed to edges in their snapshot (checked there again at connect time,
//! after name resolution), and the API check of a service's literal origin addresses.
//!
//! A node address is refused as a whole, unless the operator allowed its network (then
//! only the node's own ports are: in a test bed every node and origin may share
//! `127.0.0.1`). The control plane's own endpoint is always refused.

use std::net::{IpAddr, SocketAddr};

use lingjing_model::origin_policy::{Allowance, OriginPolicy};
use lingjing_model::{Node, Service};
use sqlx::AnyConnection;

use crate::context::ViewContext;
use crate::error::{ApiError, StoreError};
use crate::store::ipam::node_addresses;
use crate::store::list_docs;

/// The policy for the platform as it is now: the operator's allowances, every node's
/// addresses (or, inside an allowed network, its ports) and the control plane's endpoint.
pub async fn policy(
    conn: &mut AnyConnection,
    ctx: &ViewContext,
) -> Result<OriginPolicy, StoreError> {
    let allowances: Vec<Allowance> = ctx
        .policy
        .allow_origins
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let in_allowed_network = |ip: IpAddr| {
        allowances
            .iter()
            .any(|a| matches!(a, Allowance::Network(n) if n.contains(&ip)))
    };
    let mut addresses = node_addresses(&mut *conn).await?;
    let mut policy = OriginPolicy {
        allowed: ctx.policy.allow_origins.clone(),
        platform_addresses: Vec::new(),
        platform_endpoints: ctx.control_endpoint.into_iter().collect(),
    };
    for node in list_docs::<Node>(conn).await? {
        for ip in addresses.remove(&node.id).unwrap_or_default() {
            if in_allowed_network(ip) {
                let p = node.ports;
                policy.platform_endpoints.extend(
                    [p.http, p.https, p.admin]
                        .into_iter()
                        .map(|port| SocketAddr::new(ip, port)),
                );
            } else {
                policy.platform_addresses.push(ip);
            }
        }
    }
    policy.platform_addresses.sort();
    policy.platform_addresses.dedup();
    policy.platform_endpoints.sort();
    policy.platform_endpoints.dedup();
    Ok(policy)
}

/// Refuses origins of `service` that are literal addresses the policy refuses, or names
/// that can only mean this machine or the platform (`localhost`, names in the zone).
/// Other names are checked by the edge when it resolves them.
pub async fn check_service(
    conn: &mut AnyConnection,
    service: &Service,
    ctx: &ViewContext,
) -> Result<(), ApiError> {
    let mut compiled = None;
    let zone = ctx.zone.trim_end_matches('.');
    for (i, origin) in service.origins.iter().enumerate() {
        if origin.bucket().is_some() {
            // Read through the S3 gateways, which check the bucket's owner.
            continue;
        }
        let field = format!("origins[{i}].address");
        if let Ok(addr) = origin.address.parse::<SocketAddr>() {
            if compiled.is_none() {
                compiled = Some(policy(&mut *conn, ctx).await?.compile());
            }
            if let Some(Err(e)) = compiled.as_ref().map(|p| p.check(addr)) {
                return Err(ApiError::invalid(field, e.to_string()));
            }
            continue;
        }
        let host = origin
            .address
            .rsplit_once(':')
            .map_or(origin.address.as_str(), |(h, _)| h)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let local = host == "localhost" || host.ends_with(".localhost");
        let platform = host == zone || host.ends_with(&format!(".{zone}"));
        if local || platform {
            return Err(ApiError::invalid(
                field,
                format!(
                    "`{host}` names {}; origins must be outside the platform",
                    if local {
                        "this machine"
                    } else {
                        "the platform itself"
                    }
                ),
            ));
        }
    }
    Ok(())
}
