//! Object storage in the API: tenants' S3 access keys (created by the operator or the
//! tenant itself; the secret is shown once; revocation reaches the gateways with the next
//! `s3` snapshot) and the storage nodes' status for operators.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use lingjing_model::Tenant;
use lingjing_model::snapshot::{S3Credential, ScrubAsked, StorageNodeStatus};
use lingjing_model::storage_layout::{
    LayoutChange, LayoutNode, StorageLayout, candidates, moved_fraction, shares_report,
};
use lingjing_model::tenant::{
    CONSOLE_S3_KEY_PREFIX, ConsoleS3Access, MAX_S3_KEYS, NewS3Key, S3KeyInfo,
};

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::{Caller, random_hex};
use crate::error::ApiError;
use crate::store::{get_doc, storage};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{id}/s3-keys", get(list).post(create))
        .route("/v1/tenants/{id}/s3-keys/console", post(console_key))
        .route("/v1/tenants/{id}/s3-keys/{key}", delete(revoke))
        .route("/v1/storage/status", get(status))
        .route("/v1/storage/scrub", post(scrub))
        .route("/v1/storage/layout", get(layout).post(apply_layout))
}

/// The operator, or tenant `id` itself.
fn require_tenant(caller: &Caller, id: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Tenant(t) if t == id => Ok(()),
        Caller::Tenant(t) => Err(ApiError::Forbidden(format!(
            "this API key belongs to tenant `{t}`: it manages only its own S3 keys, not `{id}`'s"
        ))),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewS3Key>), ApiError> {
    require_tenant(&caller, &id)?;
    let mut w = state.store.write(true).await?;
    get_doc::<Tenant>(&mut w.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &id))?;
    let keys = storage::s3_key_count(&mut w.tx, &id).await?;
    if keys as usize >= MAX_S3_KEYS {
        return Err(ApiError::conflict(
            "limit_reached",
            format!(
                "tenant `{id}` has {keys} S3 keys, the limit is {MAX_S3_KEYS}: revoke one first (lingjing tenant s3-key-revoke)"
            ),
        ));
    }
    // The shapes AWS uses: a 20-character key id and a 40-character secret.
    let key = S3Credential {
        access_key: format!("LJ{}", random_hex(9).to_ascii_uppercase()),
        secret: random_hex(20),
        tenant: id.clone(),
        read_only_bucket: None,
    };
    storage::insert_s3_key(&mut w.tx, &key, &crate::time::now_rfc3339()).await?;
    if let Some(v) = w.commit().await? {
        state.hub.publish(v);
    }
    tracing::info!(tenant = %id, access_key = %key.access_key, "S3 key created");
    Ok((
        StatusCode::CREATED,
        Json(NewS3Key {
            access_key: key.access_key,
            secret: key.secret,
            tenant: id,
        }),
    ))
}

/// The tenant's console S3 key (made on first use) and the gateways that are up.
async fn console_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConsoleS3Access>, ApiError> {
    require_tenant(&caller, &id)?;
    let mut tx = state.store.read().await?;
    get_doc::<Tenant>(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &id))?;
    let gateways = crate::snapshot::s3_gateways(&crate::snapshot::node_infos(&mut tx).await?)
        .iter()
        .map(ToString::to_string)
        .collect();
    let known = storage::console_s3_key(&mut tx, &id).await?;
    tx.commit().await?;
    let (key, created) = match known {
        Some(key) => (key, false),
        None => (
            console_credential(&state.store, &state.hub, &id).await?,
            true,
        ),
    };
    Ok(Json(ConsoleS3Access {
        access_key: key.access_key,
        secret: key.secret,
        tenant: id,
        gateways,
        created,
    }))
}

/// Tenant `tenant`'s console S3 key, made (and announced to the gateways with the next
/// `s3` snapshot) when it has none yet. Also what the control plane itself writes and reads
/// a tenant's buckets with (road inspection's evidence images, `crate::evidence`).
pub(crate) async fn console_credential(
    store: &crate::Store,
    hub: &crate::snapshot::Hub,
    tenant: &str,
) -> Result<S3Credential, crate::error::StoreError> {
    let mut conn = store.pool().acquire().await?;
    if let Some(key) = storage::console_s3_key(&mut conn, tenant).await? {
        return Ok(key);
    }
    drop(conn);
    // Only a new key changes the configuration (and bumps its version).
    let mut w = store.write(true).await?;
    let key = match storage::console_s3_key(&mut w.tx, tenant).await? {
        Some(key) => key,
        None => {
            let hex = random_hex(9).to_ascii_uppercase();
            let key = S3Credential {
                access_key: format!("{CONSOLE_S3_KEY_PREFIX}{}", &hex[..17]),
                secret: random_hex(20),
                tenant: tenant.to_owned(),
                read_only_bucket: None,
            };
            storage::insert_s3_key(&mut w.tx, &key, &crate::time::now_rfc3339()).await?;
            tracing::info!(%tenant, access_key = %key.access_key, "console S3 key created");
            key
        }
    };
    if let Some(v) = w.commit().await? {
        hub.publish(v);
    }
    Ok(key)
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<S3KeyInfo>>, ApiError> {
    require_tenant(&caller, &id)?;
    let mut conn = state.store.pool().acquire().await?;
    get_doc::<Tenant>(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &id))?;
    Ok(Json(storage::s3_keys(&mut conn, &id).await?))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require_tenant(&caller, &id)?;
    let mut w = state.store.write(true).await?;
    if !storage::delete_s3_key(&mut w.tx, &id, &key).await? {
        return Err(ApiError::NotFound(format!(
            "tenant `{id}` has no S3 key `{key}`"
        )));
    }
    if let Some(v) = w.commit().await? {
        state.hub.publish(v);
    }
    tracing::info!(tenant = %id, access_key = %key, "S3 key revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<StorageNodeStatus>>, ApiError> {
    caller.require_operator()?;
    let mut tx = state.store.read().await?;
    let nodes = crate::snapshot::build_storage(
        &mut tx,
        lingjing_model::snapshot::Role::Storage,
        state.views.storage,
    )
    .await?
    .body
    .nodes;
    let mut reports = storage::reports(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|node| {
                let report = reports.remove(&node.node.id);
                StorageNodeStatus {
                    node,
                    reported_at: report.as_ref().map(|(_, at)| at.clone()),
                    report: report.map(|(r, _)| r),
                }
            })
            .collect(),
    ))
}

/// Asks every storage node to start a scrub pass now, with the cluster token (operators
/// never hold it); each node's answer, or why it could not be asked.
async fn scrub(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ScrubAsked>>, ApiError> {
    caller.require_operator()?;
    let mut tx = state.store.read().await?;
    let snapshot = crate::snapshot::build_storage(
        &mut tx,
        lingjing_model::snapshot::Role::Storage,
        state.views.storage,
    )
    .await?
    .body;
    tx.commit().await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::Internal(format!("HTTP client: {e}")))?;
    let asks = snapshot.nodes.iter().map(|n| {
        let (http, token) = (&http, &snapshot.cluster_token);
        async move {
            let Some(ip) = n.addresses.first() else {
                return ScrubAsked {
                    node: n.node.id.clone(),
                    started: false,
                    error: Some("no address in its pools".into()),
                };
            };
            let url = format!(
                "http://{}/v1/scrub",
                std::net::SocketAddr::new(*ip, n.node.ports.http)
            );
            let answer = http.post(url).bearer_auth(token).send().await;
            let (started, error) = match answer {
                Ok(r) if r.status() == StatusCode::ACCEPTED => (true, None),
                Ok(r) if r.status() == StatusCode::OK => (false, None),
                Ok(r) => (false, Some(format!("answered {}", r.status()))),
                Err(e) => (false, Some(e.to_string())),
            };
            ScrubAsked {
                node: n.node.id.clone(),
                started,
                error,
            }
        }
    });
    Ok(Json(futures::future::join_all(asks).await))
}

/// The layout in effect: the applied one, or in version 0 every storage node with an equal
/// share (capacity 1 each).
async fn effective_layout(
    conn: &mut sqlx::AnyConnection,
) -> Result<(StorageLayout, Vec<lingjing_model::Node>), ApiError> {
    let layout = storage::layout(&mut *conn).await?;
    let nodes: Vec<lingjing_model::Node> = crate::store::list_docs::<lingjing_model::Node>(conn)
        .await?
        .into_iter()
        .filter(|n| n.roles.contains(&lingjing_model::NodeRole::Storage))
        .collect();
    if layout.version > 0 {
        return Ok((layout, nodes));
    }
    let implicit = StorageLayout {
        version: 0,
        nodes: nodes
            .iter()
            .map(|n| LayoutNode {
                node: n.id.clone(),
                capacity_gib: 1,
            })
            .collect(),
        applied_at: None,
    };
    Ok((implicit, nodes))
}

async fn layout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<StorageLayout>, ApiError> {
    caller.require_operator()?;
    let mut tx = state.store.read().await?;
    let (layout, _) = effective_layout(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(layout))
}

#[derive(Debug, serde::Deserialize)]
struct ApplyParams {
    #[serde(default)]
    dry_run: bool,
}

/// Applies a new layout: its version must be the current one plus one (so two operators
/// cannot overwrite each other's change unseen), its nodes storage nodes of the inventory.
/// With `?dry_run=true` only checks it and estimates what moves.
async fn apply_layout(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ApplyParams>,
    ApiJson(mut next): ApiJson<StorageLayout>,
) -> Result<Json<LayoutChange>, ApiError> {
    caller.require_operator()?;
    next.check().map_err(ApiError::from)?;
    let mut w = state.store.write(true).await?;
    let (current, inventory) = effective_layout(&mut w.tx).await?;
    if next.version != current.version + 1 {
        return Err(ApiError::conflict(
            "version_mismatch",
            format!(
                "the layout in effect is version {}; a new one must be version {} (read it again with `lingjing storage layout show`)",
                current.version,
                current.version + 1
            ),
        ));
    }
    for (i, n) in next.nodes.iter().enumerate() {
        if !inventory.iter().any(|s| s.id == n.node) {
            return Err(ApiError::invalid(
                format!("nodes[{i}].node"),
                format!("`{}` is not a node with the storage role", n.node),
            ));
        }
    }
    // Enough nodes taking data for what the policy keeps of each block: fewer would
    // quietly keep fewer copies (or no codes) from now on.
    let policy = state.views.storage;
    let writable = next.nodes.iter().filter(|n| n.capacity_gib > 0).count();
    let least = policy.erasure.map_or(policy.replicas as usize, |c| {
        (policy.replicas as usize).max(c.data() + 1)
    });
    if writable < least {
        return Err(ApiError::invalid(
            "nodes",
            format!(
                "{writable} node(s) with capacity; the storage policy needs at least {least} ({} copies{})",
                policy.replicas,
                policy
                    .erasure
                    .map_or(String::new(), |c| format!(", code {c}"))
            ),
        ));
    }
    let site = |id: &str| -> String {
        inventory
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.site.clone())
            .unwrap_or_default()
    };
    let sited = |l: &StorageLayout| -> Vec<(String, String, u64)> {
        l.nodes
            .iter()
            .map(|n| (n.node.clone(), site(&n.node), n.capacity_gib))
            .collect()
    };
    let (before, after) = (sited(&current), sited(&next));
    let pieces = policy.erasure.map_or(policy.replicas as usize, |c| {
        c.total().max(policy.replicas as usize)
    });
    let moved_fraction = moved_fraction(&candidates(&before), &candidates(&after), pieces, 10_000);
    let (shares, usable_gib, warnings) = shares_report(&candidates(&after), pieces, 10_000);
    next.applied_at = Some(crate::time::now_rfc3339());
    if !params.dry_run {
        storage::set_layout(&mut w.tx, &next).await?;
        if let Some(v) = w.commit().await? {
            state.hub.publish(v);
        }
        tracing::info!(
            version = next.version,
            moved_fraction,
            usable_gib,
            warnings = warnings.len(),
            "storage layout applied"
        );
        for w in &warnings {
            tracing::warn!(version = next.version, "{w}");
        }
    }
    Ok(Json(LayoutChange {
        layout: next,
        moved_fraction,
        pieces: u32::try_from(pieces).unwrap_or(u32::MAX),
        dry_run: params.dry_run,
        shares,
        usable_gib,
        warnings,
    }))
}
