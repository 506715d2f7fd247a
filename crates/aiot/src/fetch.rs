//! Fetching an artefact onto the node: from each source in turn (the site's edge, then
//! the control plane), streamed to a `.part` file while its SHA-256 and size are counted,
//! and put in place only when both match. Nothing a source says is trusted: a cache that
//! serves other bytes, or more of them, is an error and the next source is tried.

use std::io::Write;

use futures::StreamExt;
use lingjing_client::Client;
use lingjing_model::artifact::MAX_ARTIFACT_BYTES;
use sha2::{Digest, Sha256};

use crate::disk::Disk;

/// Fetches `digest` into `disk` unless it is there already. `sources` are tried in order;
/// the error names what each said.
pub async fn fetch(sources: &[Client], disk: &Disk, digest: &str) -> Result<(), String> {
    if disk.has_artifact(digest) {
        return Ok(());
    }
    if sources.is_empty() {
        return Err(format!(
            "artefact {digest} is not on this node and no source to fetch it from is known"
        ));
    }
    let mut errors = Vec::new();
    for source in sources {
        match fetch_from(source, disk, digest).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(source = source.endpoint(), digest, error = %e, "artefact fetch failed");
                errors.push(format!("{}: {e}", source.endpoint()));
            }
        }
    }
    Err(format!(
        "cannot fetch artefact {digest}: {}",
        errors.join("; ")
    ))
}

async fn fetch_from(source: &Client, disk: &Disk, digest: &str) -> Result<(), String> {
    let response = source
        .get_response(&format!("/v1/artifacts/sha256/{digest}"))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(len) = response.content_length()
        && len > MAX_ARTIFACT_BYTES
    {
        return Err(format!(
            "declares {len} bytes, more than an artefact may have ({MAX_ARTIFACT_BYTES})"
        ));
    }
    let part = disk.partial_path(digest);
    let mut file = std::fs::File::create(&part)
        .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = response.bytes_stream();
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("the download broke off: {e}"))?;
            size += chunk.len() as u64;
            if size > MAX_ARTIFACT_BYTES {
                return Err(format!(
                    "sent more than an artefact may have ({MAX_ARTIFACT_BYTES} bytes)"
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        }
        let got = hex::encode(hasher.finalize());
        if got != digest {
            return Err(format!(
                "digest mismatch: the {size} bytes received have SHA-256 {got}"
            ));
        }
        Ok(())
    }
    .await;
    drop(file);
    match result {
        Ok(()) => disk.commit_artifact(digest),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}
