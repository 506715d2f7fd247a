//! Create, read, update, delete and list for every [`Resource`], with the checks that keep
//! the inventory consistent: validation, references that must exist, ids that must match,
//! tenants confined to their own resources, and deletes refused while something refers
//! to the resource. Lists page (`limit`, `offset`, in id order) and say how many there
//! are in all (`X-Total-Count`).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::AnyConnection;

use serde::Deserialize;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::resource::{Resource, referrer_of};
use crate::store::{DocWindow, delete_doc, get_doc, insert_doc, page_docs, row_exists, update_doc};

pub fn routes<R: Resource>() -> Router<AppState> {
    Router::new()
        .route(
            &format!("/v1/{}", R::PLURAL),
            get(list::<R>).post(create::<R>),
        )
        .route(
            &format!("/v1/{}/{{id}}", R::PLURAL),
            get(show::<R>).put(replace::<R>).delete(remove::<R>),
        )
}

/// May `caller` see or change `item`?
fn permitted<R: Resource>(caller: &Caller, item: &R) -> bool {
    match caller {
        Caller::Operator => true,
        Caller::Tenant(t) => item.tenant() == Some(t.as_str()),
    }
}

/// Tenants may read their own tenant record and manage their own services, no more.
fn check_kind_access<R: Resource>(caller: &Caller, writing: bool) -> Result<(), ApiError> {
    let allowed = match caller {
        Caller::Operator => true,
        Caller::Tenant(_) => R::TENANT_SCOPED || (R::KIND == "tenant" && !writing),
    };
    if allowed {
        Ok(())
    } else {
        caller.require_operator()
    }
}

async fn check_references<R: Resource>(conn: &mut AnyConnection, item: &R) -> Result<(), ApiError> {
    for r in item.references() {
        if !row_exists(&mut *conn, r.table, &r.id).await? {
            return Err(ApiError::invalid(
                r.field,
                format!(
                    "{} `{}` does not exist: create it first (lingjing {} add) or fix the id",
                    r.kind, r.id, r.kind
                ),
            ));
        }
    }
    Ok(())
}

async fn view_one<R: Resource>(state: &AppState, item: R) -> Result<R::View, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    R::views(&mut conn, vec![item], &state.views)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("view of one item came back empty".into()))
}

/// Most items one list request returns when it pages (`limit`).
pub const MAX_PAGE: u64 = 10_000;

/// A list's window (both optional: without them, everything).
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// How many, 1 to [`MAX_PAGE`].
    limit: Option<u64>,
    /// How many to skip first (in the order asked).
    offset: Option<u64>,
    /// Only those whose id, tenant (or, for services, a hostname) contains this,
    /// ignoring case; at most 200 characters.
    q: Option<String>,
    /// `id` (the default) or `tenant` (then id; tenant-scoped kinds).
    sort: Option<String>,
    /// `asc` (the default) or `desc`.
    dir: Option<String>,
}

async fn list<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<impl IntoResponse, ApiError> {
    check_kind_access::<R>(&caller, false)?;
    if page.limit.is_some_and(|n| !(1..=MAX_PAGE).contains(&n)) {
        return Err(ApiError::invalid("limit", format!("give 1 to {MAX_PAGE}")));
    }
    let mut conn = state.store.pool().acquire().await?;
    // A tenant's own rows of a tenant-scoped kind are picked by the database; other
    // kinds a tenant may read (its tenant record) are few and filtered here.
    let tenant = match &caller {
        Caller::Tenant(t) if R::TENANT_SCOPED => Some(t.as_str()),
        _ => None,
    };
    if page.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::invalid("q", "at most 200 characters"));
    }
    let by_tenant = match page.sort.as_deref() {
        None | Some("id") => false,
        Some("tenant") if R::TENANT_SCOPED => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "sort",
                format!(
                    "`{other}`: sort {} by `id`{}",
                    R::PLURAL,
                    if R::TENANT_SCOPED { " or `tenant`" } else { "" }
                ),
            ));
        }
    };
    let desc = match page.dir.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "dir",
                format!("`{other}`: give `asc` or `desc`"),
            ));
        }
    };
    let window = DocWindow {
        tenant,
        q: page.q.as_deref().map(str::trim),
        by_tenant,
        desc,
        offset: page.offset.unwrap_or(0),
        limit: page.limit,
    };
    let (items, total) = if tenant.is_some() || matches!(caller, Caller::Operator) {
        page_docs::<R>(&mut conn, window).await?
    } else {
        let all: Vec<R> = page_docs::<R>(
            &mut conn,
            DocWindow {
                offset: 0,
                limit: None,
                ..window
            },
        )
        .await?
        .0
        .into_iter()
        .filter(|i| permitted(&caller, i))
        .collect();
        let total = all.len() as u64;
        let skip = usize::try_from(page.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let take = page.limit.map_or(usize::MAX, |n| n as usize);
        (all.into_iter().skip(skip).take(take).collect(), total)
    };
    let views = R::views(&mut conn, items, &state.views).await?;
    Ok(([("x-total-count", total.to_string())], Json(views)))
}

async fn show<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<R::View>, ApiError> {
    check_kind_access::<R>(&caller, false)?;
    let mut conn = state.store.pool().acquire().await?;
    let item = get_doc::<R>(&mut conn, &id)
        .await?
        .filter(|i| permitted(&caller, i))
        .ok_or_else(|| ApiError::not_found(R::KIND, &id))?;
    drop(conn);
    Ok(Json(view_one(&state, item).await?))
}

async fn create<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(item): ApiJson<R>,
) -> Result<impl IntoResponse, ApiError> {
    check_kind_access::<R>(&caller, true)?;
    item.validate()?;
    if !permitted(&caller, &item) {
        return Err(ApiError::Forbidden(format!(
            "a tenant key may only create its own {}s: set `tenant` to your tenant id",
            R::KIND
        )));
    }
    let mut w = state.store.write(true).await?;
    if get_doc::<R>(&mut w.tx, item.id()).await?.is_some() {
        return Err(ApiError::Conflict {
            code: "already_exists",
            message: format!(
                "{} `{}` already exists: change it with PUT /v1/{}/{}",
                R::KIND,
                item.id(),
                R::PLURAL,
                item.id()
            ),
            field: Some("id".into()),
        });
    }
    check_references(&mut w.tx, &item).await?;
    insert_doc(&mut w.tx, &item).await?;
    item.after_write(&mut w.tx, &state.views).await?;
    item.after_create(&mut w.tx, &state.views).await?;
    state.published(w.commit().await?);
    tracing::info!(kind = R::KIND, id = item.id(), "created");
    Ok((StatusCode::CREATED, Json(view_one(&state, item).await?)))
}

async fn replace<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(mut item): ApiJson<R>,
) -> Result<Json<R::View>, ApiError> {
    check_kind_access::<R>(&caller, true)?;
    if item.id() != id {
        return Err(ApiError::invalid(
            "id",
            format!(
                "the body's id `{}` differs from `{id}` in the path; ids cannot be changed",
                item.id()
            ),
        ));
    }
    let mut w = state.store.write(true).await?;
    let existing = get_doc::<R>(&mut w.tx, &id)
        .await?
        .filter(|i| permitted(&caller, i))
        .ok_or_else(|| ApiError::not_found(R::KIND, &id))?;
    item.keep_secrets(&existing);
    item.validate()?;
    if !permitted(&caller, &item) || existing.tenant() != item.tenant() {
        return Err(ApiError::invalid(
            "tenant",
            "the owning tenant cannot be changed",
        ));
    }
    check_references(&mut w.tx, &item).await?;
    update_doc(&mut w.tx, &item).await?;
    item.after_write(&mut w.tx, &state.views).await?;
    state.published(w.commit().await?);
    tracing::info!(kind = R::KIND, id = item.id(), "updated");
    Ok(Json(view_one(&state, item).await?))
}

async fn remove<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_kind_access::<R>(&caller, true)?;
    let mut w = state.store.write(true).await?;
    get_doc::<R>(&mut w.tx, &id)
        .await?
        .filter(|i| permitted(&caller, i))
        .ok_or_else(|| ApiError::not_found(R::KIND, &id))?;
    if let Some(by) = referrer_of(&mut w.tx, R::TABLE, &id).await? {
        return Err(ApiError::conflict(
            "in_use",
            format!(
                "{} `{id}` is still used by {by}; change or remove that first",
                R::KIND
            ),
        ));
    }
    R::before_delete(&mut w.tx, &id).await?;
    delete_doc::<R>(&mut w.tx, &id).await?;
    state.published(w.commit().await?);
    tracing::info!(kind = R::KIND, id = %id, "deleted");
    Ok(StatusCode::NO_CONTENT)
}
