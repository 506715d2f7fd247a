//! Colocation cabinets: at a site, assigned to tenants (each tenant must exist; no unit
//! held twice on one day, checked by the model), viewed with their power warnings.

use lingjing_model::colocation::Cabinet;
use lingjing_model::{Site, Tenant};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::{ApiError, StoreError};

/// A cabinet as the API shows it: with what the operator should know (power measured or
/// sold over the contract).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CabinetView {
    #[serde(flatten)]
    pub cabinet: Cabinet,
    pub warnings: Vec<String>,
}

impl Resource for Cabinet {
    const KIND: &'static str = "cabinet";
    const PLURAL: &'static str = "cabinets";
    const TABLE: &'static str = "cabinets";
    type View = CabinetView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("site_id", Some(self.site.clone()))]
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![reference::<Site>("site", &self.site)];
        refs.extend(
            self.assignments
                .iter()
                .enumerate()
                .map(|(i, a)| reference::<Tenant>(format!("assignments[{i}].tenant"), &a.tenant)),
        );
        refs.extend(
            self.cross_connects.iter().enumerate().map(|(i, c)| {
                reference::<Tenant>(format!("cross_connects[{i}].tenant"), &c.tenant)
            }),
        );
        refs
    }
    async fn after_write(
        &self,
        _conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        for w in self.warnings() {
            tracing::warn!(cabinet = %self.id, "{w}");
        }
        Ok(())
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items
            .into_iter()
            .map(|cabinet| CabinetView {
                warnings: cabinet.warnings(),
                cabinet,
            })
            .collect())
    }
}
