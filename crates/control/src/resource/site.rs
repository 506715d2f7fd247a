//! Sites: in a region, served by lines, optionally filling from a parent site (the chain
//! of parents must end).

use std::collections::{BTreeMap, BTreeSet};

use lingjing_model::{Line, Region, Site};
use sqlx::AnyConnection;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::{ApiError, StoreError};
use crate::store::list_docs;

impl Resource for Site {
    const KIND: &'static str = "site";
    const PLURAL: &'static str = "sites";
    const TABLE: &'static str = "sites";
    type View = Site;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("region_id", Some(self.region.clone())),
            ("parent_id", self.parent.clone()),
        ]
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![reference::<Region>("region", &self.region)];
        refs.extend(
            self.lines
                .iter()
                .enumerate()
                .map(|(i, l)| reference::<Line>(format!("lines[{i}]"), l)),
        );
        refs.extend(self.parent.iter().map(|p| reference::<Site>("parent", p)));
        refs
    }
    /// Caches fill from their parent site: the chain of parents must end.
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let parents: BTreeMap<String, Option<String>> = list_docs::<Site>(conn)
            .await?
            .into_iter()
            .map(|s| (s.id, s.parent))
            .collect();
        let mut seen = BTreeSet::new();
        let mut at = self.parent.clone();
        while let Some(id) = at {
            if id == self.id || !seen.insert(id.clone()) {
                return Err(ApiError::invalid(
                    "parent",
                    format!("`{id}` would make the chain of parent sites a loop"),
                ));
            }
            at = parents.get(&id).cloned().flatten();
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
