//! Fetching an artefact onto the node: from each source in turn (those the snapshot lists,
//! then the control plane), streamed to a temporary file of its own while its SHA-256 and
//! size are counted, and put in place only when both match. Nothing a source says is
//! trusted: a cache that serves other bytes, or more of them, is an error and the next
//! source is tried. A source that stalls is given up after [`IDLE`].

use std::time::Duration;

use futures::StreamExt;
use lingjing_client::Client;
use lingjing_model::artifact::MAX_ARTIFACT_BYTES;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::disk::Disk;

/// Longest wait for a response head, or for the next piece of a body.
pub const IDLE: Duration = Duration::from_secs(30);

/// Where an artefact can be fetched from: a base URL, and the Host to send there.
#[derive(Clone)]
pub struct Source {
    pub client: Client,
    pub host: Option<String>,
}

impl Source {
    fn name(&self) -> String {
        match &self.host {
            Some(h) => format!("{} ({h})", self.client.endpoint()),
            None => self.client.endpoint().to_owned(),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// Every source answered for good (wrong bytes, too large, not there, refused):
    /// trying again will not help. Otherwise a source was unreachable, stalled or failed
    /// (5xx), and a later try may succeed.
    pub permanent: bool,
    pub message: String,
}

/// Fetches `digest` into `disk` unless it is there already. `sources` are tried in order;
/// the error names what each said.
pub async fn fetch(sources: &[Source], disk: &Disk, digest: &str) -> Result<(), FetchError> {
    if disk.has_artifact(digest) {
        return Ok(());
    }
    if sources.is_empty() {
        return Err(FetchError {
            permanent: false,
            message: format!(
                "artefact {digest} is not on this node and no source to fetch it from is known"
            ),
        });
    }
    let mut errors = Vec::new();
    let mut permanent = true;
    for source in sources {
        match fetch_from(source, disk, digest).await {
            Ok(()) => return Ok(()),
            Err((lasting, e)) => {
                tracing::warn!(source = %source.name(), digest, error = %e, "artefact fetch failed");
                permanent &= lasting;
                errors.push(format!("{}: {e}", source.name()));
            }
        }
    }
    Err(FetchError {
        permanent,
        message: format!("cannot fetch artefact {digest}: {}", errors.join("; ")),
    })
}

/// One source; the error says whether it is lasting.
async fn fetch_from(source: &Source, disk: &Disk, digest: &str) -> Result<(), (bool, String)> {
    let response = tokio::time::timeout(
        IDLE,
        source.client.get_response(
            &format!("/v1/artifacts/sha256/{digest}"),
            source.host.as_deref(),
        ),
    )
    .await
    .map_err(|_| (false, format!("no answer within {} s", IDLE.as_secs())))?
    .map_err(|e| {
        let lasting = e.status().is_some_and(|s| (400..500).contains(&s));
        (lasting, e.to_string())
    })?;
    if let Some(len) = response.content_length()
        && len > MAX_ARTIFACT_BYTES
    {
        return Err((
            true,
            format!("declares {len} bytes, more than an artefact may have ({MAX_ARTIFACT_BYTES})"),
        ));
    }
    let part = disk.partial_path(digest);
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| (false, format!("cannot create {}: {e}", part.display())))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = response.bytes_stream();
    let result = async {
        loop {
            let next = tokio::time::timeout(IDLE, body.next()).await.map_err(|_| {
                (
                    false,
                    format!("the download stalled for {} s", IDLE.as_secs()),
                )
            })?;
            let Some(chunk) = next else {
                break;
            };
            let chunk = chunk.map_err(|e| (false, format!("the download broke off: {e}")))?;
            size += chunk.len() as u64;
            if size > MAX_ARTIFACT_BYTES {
                return Err((
                    true,
                    format!("sent more than an artefact may have ({MAX_ARTIFACT_BYTES} bytes)"),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| (false, format!("cannot write {}: {e}", part.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| (false, format!("cannot write {}: {e}", part.display())))?;
        let got = hex::encode(hasher.finalize());
        if got != digest {
            return Err((
                true,
                format!("digest mismatch: the {size} bytes received have SHA-256 {got}"),
            ));
        }
        Ok(())
    }
    .await;
    drop(file);
    match result {
        Ok(()) => {
            let disk = disk.clone();
            let digest = digest.to_owned();
            tokio::task::spawn_blocking(move || disk.commit_artifact(&digest, &part))
                .await
                .map_err(|e| (false, format!("the writer stopped: {e}")))?
                .map_err(|e| (false, e))
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(e)
        }
    }
}
