//! The resources of the REST API: how each model type is stored (table, reference
//! columns), what it refers to, what must hold before it is written or deleted, and the
//! view the API returns for it. Generic handlers in `api::crud` serve them all.
//!
//! This file holds the [`Resource`] trait and what all kinds share (references and the
//! "who refers to it?" scan); each kind has its own file. The checks read the database
//! only through `crate::store`.

mod cabinet;
mod inspect;
mod line;
mod monitor;
mod node;
mod pool;
mod record;
mod region;
mod service;
mod site;
mod tenant;

use std::future::Future;

use lingjing_model::{IpPool, Node, Region, Service, Site, Validate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;
use utoipa::ToSchema;

pub use crate::context::ViewContext;
use crate::error::{ApiError, StoreError};
use crate::store::list_docs;
pub use cabinet::CabinetView;
pub use inspect::DeviceView;
pub use line::LineView;
pub use node::NodeView;
pub use pool::PoolView;
pub use record::DnsRecordView;
pub use service::ServiceView;

/// A reference from one resource to another, by id.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The referring field, e.g. `region` or `steering.sites[0]`.
    pub field: String,
    /// The kind referred to, e.g. `region`.
    pub kind: &'static str,
    /// Its table.
    pub table: &'static str,
    pub id: String,
}

/// A resource kind of the REST API.
pub trait Resource:
    Serialize + DeserializeOwned + Validate + ToSchema + Clone + Send + Sync + Unpin + 'static
{
    /// Singular name, e.g. `site`.
    const KIND: &'static str;
    /// Path segment and table, e.g. `sites`.
    const PLURAL: &'static str;
    const TABLE: &'static str;
    /// Whether tenants (not only the operator) may manage their own resources of this kind.
    const TENANT_SCOPED: bool = false;
    /// More a list's `q` searches besides the id (and tenant): an SQL condition in which
    /// `{q}` stands for the lower-cased `LIKE` pattern (escaped with a backslash).
    const SEARCH: Option<&'static str> = None;

    /// What the API returns for one resource.
    type View: Serialize + ToSchema + Send + 'static;

    fn id(&self) -> &str;

    /// The owning tenant, for tenant-scoped kinds.
    fn tenant(&self) -> Option<&str> {
        None
    }

    /// Columns stored beside the JSON body (constrained by foreign keys).
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        Vec::new()
    }

    /// Other resources this one refers to; each must exist when it is written.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    /// Checks that need the database, inside the write transaction, after the row is
    /// written (e.g. cycles, hostname ownership).
    fn after_write(
        &self,
        _conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// Checks only a new resource must pass (quotas, reserved ids), inside the write
    /// transaction after `after_write`.
    fn after_create(
        &self,
        _conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// On replace, before validation: carry over write-only secrets the caller left out
    /// (reads never return them).
    fn keep_secrets(&mut self, _existing: &Self) {}

    /// Checks before a delete, inside the write transaction.
    fn before_delete(
        _conn: &mut AnyConnection,
        _id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// Builds the views of `items`.
    fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        ctx: &ViewContext,
    ) -> impl Future<Output = Result<Vec<Self::View>, StoreError>> + Send;
}

pub(crate) fn reference<R: Resource>(field: impl Into<String>, id: &str) -> Reference {
    Reference {
        field: field.into(),
        kind: R::KIND,
        table: R::TABLE,
        id: id.to_owned(),
    }
}

/// Which resource, if any, refers to `kind` `id`: the answer to "can it be deleted?".
pub async fn referrer_of(
    conn: &mut AnyConnection,
    table: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    async fn scan<R: Resource>(
        conn: &mut AnyConnection,
        table: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        for item in list_docs::<R>(conn).await? {
            if let Some(r) = item
                .references()
                .into_iter()
                .find(|r| r.table == table && r.id == id)
            {
                return Ok(Some(format!("{} `{}` ({})", R::KIND, item.id(), r.field)));
            }
        }
        Ok(None)
    }
    let found = match scan::<Region>(conn, table, id).await? {
        Some(f) => Some(f),
        None => match scan::<Site>(conn, table, id).await? {
            Some(f) => Some(f),
            None => match scan::<Node>(conn, table, id).await? {
                Some(f) => Some(f),
                None => match scan::<IpPool>(conn, table, id).await? {
                    Some(f) => Some(f),
                    None => match scan::<Service>(conn, table, id).await? {
                        Some(f) => Some(f),
                        None => match scan::<lingjing_model::colocation::Cabinet>(conn, table, id)
                            .await?
                        {
                            Some(f) => Some(f),
                            None => match scan::<lingjing_model::inspect::Device>(conn, table, id)
                                .await?
                            {
                                Some(f) => Some(f),
                                None => {
                                    match scan::<lingjing_model::inspect::Crew>(conn, table, id)
                                        .await?
                                    {
                                        Some(f) => Some(f),
                                        None => match scan::<lingjing_model::monitor::Sensor>(
                                            conn, table, id,
                                        )
                                        .await?
                                        {
                                            Some(f) => Some(f),
                                            None => {
                                                scan::<lingjing_model::monitor::Receiver>(
                                                    conn, table, id,
                                                )
                                                .await?
                                            }
                                        },
                                    }
                                }
                            },
                        },
                    },
                },
            },
        },
    };
    if found.is_some() || table != "regions" {
        return Ok(found);
    }
    Ok(crate::store::lines::prefix_in_region(conn, id)
        .await?
        .map(|(line, cidr)| format!("line `{line}` (prefix {cidr})")))
}
