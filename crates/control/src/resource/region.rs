//! Regions: a tree (country, province, city, ...) whose levels must shrink downwards and
//! which must not loop.

use std::collections::{BTreeMap, BTreeSet};

use lingjing_model::Region;
use sqlx::AnyConnection;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::{ApiError, StoreError};
use crate::store::list_docs;

impl Resource for Region {
    const KIND: &'static str = "region";
    const PLURAL: &'static str = "regions";
    const TABLE: &'static str = "regions";
    type View = Region;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("parent_id", self.parent.clone())]
    }
    fn references(&self) -> Vec<Reference> {
        self.parent
            .iter()
            .map(|p| reference::<Region>("parent", p))
            .collect()
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let regions: BTreeMap<String, Region> = list_docs::<Region>(conn)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut seen = BTreeSet::new();
        let mut at = self.parent.clone();
        while let Some(id) = at {
            if id == self.id || !seen.insert(id.clone()) {
                return Err(ApiError::invalid(
                    "parent",
                    format!(
                        "`{}` would make the region tree a cycle",
                        self.parent.as_deref().unwrap_or("")
                    ),
                ));
            }
            let Some(region) = regions.get(&id) else {
                break;
            };
            if region.level >= self.level {
                return Err(ApiError::invalid(
                    "level",
                    format!(
                        "a {:?} region cannot be inside `{}`, a {:?} region",
                        self.level, region.id, region.level
                    )
                    .to_lowercase(),
                ));
            }
            at = region.parent.clone();
            // only the direct parent's level matters for ordering; keep walking for cycles
            seen.insert(region.id.clone());
        }
        // A new level must still be larger than the regions inside this one.
        if let Some(child) = regions
            .values()
            .find(|r| r.parent.as_deref() == Some(self.id.as_str()) && r.level <= self.level)
        {
            return Err(ApiError::invalid(
                "level",
                format!(
                    "`{}` inside it is a {:?} region: a {:?} region cannot contain it",
                    child.id, child.level, self.level
                )
                .to_lowercase(),
            ));
        }
        Ok(())
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}
