//! Artefacts: `PUT /v1/artifacts/sha256/{digest}` (operator) streams a body into the
//! database, checks its SHA-256 against the name and its size against
//! [`MAX_ARTIFACT_BYTES`], and keeps it only if both hold; an artefact already kept is
//! never overwritten (the body is not read). `GET` (operator or a node) streams it back,
//! immutable and cacheable for ever, as the edges that carry it to nodes will cache it.
//! `GET /v1/artifacts` lists them.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use lingjing_model::artifact::{ArtifactInfo, MAX_ARTIFACT_BYTES, check_digest};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::auth::{Caller, DataPlaneCaller, random_hex};
use crate::error::ApiError;
use crate::store::artifacts::{self, CHUNK_BYTES, Finished};

/// An upload not finished in this long is taken for abandoned and swept.
const ABANDONED_AFTER_MS: i64 = 24 * 3600 * 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/artifacts", get(list))
        .route("/v1/artifacts/sha256/{digest}", get(read).put(write))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ArtifactInfo>>, ApiError> {
    caller.require_operator()?;
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(artifacts::list(&mut conn).await?))
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "an artefact is at most {} MiB",
        MAX_ARTIFACT_BYTES >> 20
    ))
}

/// Reads `body` into chunks of upload `id`: its size, chunk count and SHA-256 (hex).
async fn receive(state: &AppState, id: &str, body: Body) -> Result<(u64, u64, String), ApiError> {
    let mut stream = body.into_data_stream();
    let mut hash = Sha256::new();
    let (mut size, mut seq) = (0u64, 0u64);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
    while let Some(piece) = stream.next().await {
        let piece = piece
            .map_err(|e| ApiError::BadRequest(format!("the body did not arrive whole: {e}")))?;
        size += piece.len() as u64;
        if size > MAX_ARTIFACT_BYTES {
            return Err(too_large());
        }
        hash.update(&piece);
        let mut rest: &[u8] = &piece;
        while !rest.is_empty() {
            let take = rest.len().min(CHUNK_BYTES - buf.len());
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buf.len() == CHUNK_BYTES {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_BYTES));
                let mut conn = state.store.pool().acquire().await?;
                artifacts::put_chunk(&mut conn, id, seq, full).await?;
                seq += 1;
            }
        }
    }
    if !buf.is_empty() {
        let mut conn = state.store.pool().acquire().await?;
        artifacts::put_chunk(&mut conn, id, seq, buf).await?;
        seq += 1;
    }
    Ok((size, seq, hex::encode(hash.finalize())))
}

async fn write(
    State(state): State<AppState>,
    caller: Caller,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ArtifactInfo>), ApiError> {
    caller.require_operator()?;
    check_digest("digest", &digest)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ARTIFACT_BYTES) {
        return Err(too_large());
    }
    let now = crate::time::now_ms();
    let id = format!("upload-{}", random_hex(16));
    {
        let mut conn = state.store.pool().acquire().await?;
        if let Some(kept) = artifacts::info(&mut conn, &digest).await? {
            return Ok((StatusCode::OK, Json(kept)));
        }
        artifacts::sweep(&mut conn, now - ABANDONED_AFTER_MS).await?;
        artifacts::begin(&mut conn, &id, &digest, now).await?;
    }
    let received = receive(&state, &id, body).await;
    let checked = match received {
        Ok((size, chunks, got)) if got == digest => Ok((size, chunks)),
        Ok((_, _, got)) => Err(ApiError::invalid(
            "digest",
            format!("the body's SHA-256 is {got}, not {digest}: nothing was kept"),
        )),
        Err(e) => Err(e),
    };
    let (size, chunks) = match checked {
        Ok(c) => c,
        Err(e) => {
            let mut conn = state.store.pool().acquire().await?;
            artifacts::discard(&mut conn, &id).await?;
            return Err(e);
        }
    };
    let created_at = crate::time::now_rfc3339();
    let mut w = state.store.write(false).await?;
    let finished = artifacts::finish(&mut w.tx, &id, &digest, size, chunks, &created_at).await?;
    let kept = artifacts::info(&mut w.tx, &digest)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("artefact {digest} vanished")))?;
    w.commit().await?;
    tracing::info!(digest, size, "artefact kept");
    Ok((
        match finished {
            Finished::Created => StatusCode::CREATED,
            Finished::Existed => StatusCode::OK,
        },
        Json(kept),
    ))
}

async fn read(
    State(state): State<AppState>,
    _caller: DataPlaneCaller,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest("digest", &digest)?;
    let info = {
        let mut conn = state.store.pool().acquire().await?;
        artifacts::info(&mut conn, &digest)
            .await?
            .ok_or_else(|| ApiError::not_found("artefact", &digest))?
    };
    // Every chunk is full but the last.
    let chunks = info.size.div_ceil(CHUNK_BYTES as u64);
    let pool = state.store.pool().clone();
    let name = digest.clone();
    let stream = futures::stream::unfold(0u64, move |seq| {
        let (pool, name) = (pool.clone(), name.clone());
        async move {
            if seq >= chunks {
                return None;
            }
            let piece = async {
                let mut conn = pool.acquire().await.map_err(std::io::Error::other)?;
                artifacts::chunk(&mut conn, &name, seq)
                    .await
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| {
                        std::io::Error::other(format!("chunk {seq} of {name} is missing"))
                    })
            }
            .await;
            Some((piece.map(Bytes::from), seq + 1))
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"sha256:{digest}\"")) {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}
