//! Lines (carriers): viewed with the number of prefixes each holds.

use lingjing_model::Line;
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Resource, ViewContext};
use crate::error::StoreError;

/// A line with the number of prefixes it holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineView {
    #[serde(flatten)]
    pub line: Line,
    pub prefix_count: u64,
}

impl Resource for Line {
    const KIND: &'static str = "line";
    const PLURAL: &'static str = "lines";
    const TABLE: &'static str = "lines";
    type View = LineView;

    fn id(&self) -> &str {
        &self.id
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let counts = crate::store::lines::prefix_counts(conn).await?;
        Ok(items
            .into_iter()
            .map(|line| LineView {
                prefix_count: counts.get(&line.id).copied().unwrap_or(0),
                line,
            })
            .collect())
    }
}
