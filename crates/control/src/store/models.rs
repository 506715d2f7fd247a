//! Edge AI model versions: inserted once (the primary key refuses a second one of the same
//! model and number), read by model, newest first.

use lingjing_model::aiot::ModelVersion;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::StoreError;

/// A registered version and when it was registered.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelVersionRecord {
    #[serde(flatten)]
    pub version: ModelVersion,
    /// RFC 3339.
    pub created_at: String,
}

/// A model and its versions, in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ModelSummary {
    pub model: String,
    pub versions: u64,
    pub latest: u32,
    /// When the latest was registered (RFC 3339).
    pub updated_at: String,
}

fn record(body: &str, created_at: String) -> Result<ModelVersionRecord, StoreError> {
    Ok(ModelVersionRecord {
        version: serde_json::from_str(body)
            .map_err(|e| StoreError::Corrupt(format!("model version: {e}")))?,
        created_at,
    })
}

/// Registers `v`; false when the model already has that version.
pub async fn insert(
    conn: &mut AnyConnection,
    v: &ModelVersion,
    created_at: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO model_versions (model, version, artifact, body, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, version) DO NOTHING",
    )
    .bind(v.model.clone())
    .bind(i64::from(v.version))
    .bind(v.artifact.clone())
    .bind(serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    .bind(created_at.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Version `version` of `model`.
pub async fn get(
    conn: &mut AnyConnection,
    model: &str,
    version: u32,
) -> Result<Option<ModelVersionRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT body, created_at FROM model_versions WHERE model = $1 AND version = $2",
    )
    .bind(model.to_owned())
    .bind(i64::from(version))
    .fetch_optional(conn)
    .await?;
    row.map(|r| record(&r.try_get::<String, _>(0)?, r.try_get(1)?))
        .transpose()
}

/// The versions of `model`, newest first.
pub async fn versions(
    conn: &mut AnyConnection,
    model: &str,
) -> Result<Vec<ModelVersionRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT body, created_at FROM model_versions WHERE model = $1 ORDER BY version DESC",
    )
    .bind(model.to_owned())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| record(&r.try_get::<String, _>(0)?, r.try_get(1)?))
        .collect()
}

/// Every model, by id.
pub async fn models(conn: &mut AnyConnection) -> Result<Vec<ModelSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT model, COUNT(*), MAX(version), MAX(created_at) FROM model_versions GROUP BY model ORDER BY model",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ModelSummary {
                model: r.try_get(0)?,
                versions: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                latest: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                updated_at: r.try_get(3)?,
            })
        })
        .collect()
}
