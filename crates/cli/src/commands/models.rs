//! `lingjing model push|list|show`: edge AI model versions. `push` hashes the ONNX file,
//! uploads it as a content-addressed artefact with a progress bar (the control plane
//! checks the digest again and keeps nothing else), uploads the self-test image likewise,
//! then registers the version from its TOML spec.

use std::path::Path;

use anyhow::{Context, bail};
use comfy_table::Cell;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::resources::explain;
use crate::args::{Global, ModelCmd};
use crate::context::client;
use crate::output::{print_list, print_one, table};

/// Bytes read from the file per piece sent.
const PIECE: usize = 256 * 1024;

pub async fn run(global: &Global, cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Push {
            file,
            model,
            version,
            spec,
            self_test_input,
            notes,
        } => {
            push(
                global,
                &file,
                &model,
                version,
                &spec,
                self_test_input.as_deref(),
                notes,
            )
            .await
        }
        ModelCmd::List => {
            let c = client(global)?;
            let models: Value = c.get("/v1/models").await.map_err(explain)?;
            if global.json {
                print_list("models", &models, true);
                return Ok(());
            }
            let mut t = table();
            t.set_header(["MODEL", "VERSIONS", "LATEST", "UPDATED"]);
            for m in models.as_array().into_iter().flatten() {
                t.add_row([
                    Cell::new(m["model"].as_str().unwrap_or("")),
                    Cell::new(&m["versions"]),
                    Cell::new(&m["latest"]),
                    Cell::new(m["updated_at"].as_str().unwrap_or("")),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        ModelCmd::Show { model, version } => {
            let c = client(global)?;
            match version {
                Some(v) => {
                    let one: Value = c
                        .get(&format!("/v1/models/{model}/versions/{v}"))
                        .await
                        .map_err(explain)?;
                    print_one(&one, true);
                }
                None => {
                    let all: Value = c
                        .get(&format!("/v1/models/{model}/versions"))
                        .await
                        .map_err(explain)?;
                    print_list("versions", &all, true);
                }
            }
            Ok(())
        }
    }
}

/// The SHA-256 (hex) and size of `path`, read in pieces.
async fn digest_of(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; PIECE];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hash.finalize()), size))
}

/// Uploads `path` as an artefact (skipped when the control plane keeps it already); its
/// digest.
async fn upload(global: &Global, path: &Path) -> anyhow::Result<String> {
    let c = client(global)?;
    let (digest, size) = digest_of(path).await?;
    // Kept already: nothing to send (the control plane would answer at once, without
    // reading the body, and a client still sending it may see the connection closed).
    if c.exists(&format!("/v1/artifacts/sha256/{digest}"))
        .await
        .map_err(explain)?
    {
        return Ok(digest);
    }
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let shown = bar.clone();
    let pieces = futures::stream::unfold(file, move |mut f| {
        let shown = shown.clone();
        async move {
            let mut buf = vec![0u8; PIECE];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    shown.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(buf), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        }
    });
    let kept: Value = c
        .put_stream(
            &format!("/v1/artifacts/sha256/{digest}"),
            size,
            reqwest::Body::wrap_stream(pieces),
        )
        .await
        .map_err(explain)
        .with_context(|| format!("uploading {}", path.display()))?;
    bar.finish_and_clear();
    if kept["digest"] != digest.as_str() {
        bail!(
            "the control plane kept {} for {}",
            kept["digest"],
            path.display()
        );
    }
    Ok(digest)
}

async fn push(
    global: &Global,
    file: &Path,
    model: &str,
    version: u32,
    spec: &Path,
    self_test_input: Option<&Path>,
    notes: Option<String>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(spec)
        .with_context(|| format!("cannot read the spec {}", spec.display()))?;
    let spec_value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", spec.display()))?;
    let mut body = serde_json::to_value(spec_value)?;
    let Some(fields) = body.as_object_mut() else {
        bail!(
            "{} must be a table with [input] and [output]",
            spec.display()
        );
    };
    match (fields.get("self_test").is_some(), self_test_input.is_some()) {
        (true, false) => bail!(
            "{} has a [self_test]: give its input image with --self-test-input",
            spec.display()
        ),
        (false, true) => bail!(
            "--self-test-input needs a [self_test] in {} (expected, tolerance)",
            spec.display()
        ),
        _ => {}
    }
    let artifact = upload(global, file).await?;
    if let Some(image) = self_test_input {
        let input = upload(global, image).await?;
        if let Some(t) = fields.get_mut("self_test").and_then(Value::as_object_mut) {
            t.insert("input".into(), json!(input));
        }
    }
    fields.insert("model".into(), json!(model));
    fields.insert("version".into(), json!(version));
    fields.insert("artifact".into(), json!(artifact));
    if let Some(n) = notes {
        fields.insert("notes".into(), json!(n));
    }
    let c = client(global)?;
    let made: Value = c
        .post(&format!("/v1/models/{model}/versions"), &body)
        .await
        .map_err(explain)?;
    if global.json {
        print_one(&made, true);
    } else {
        println!("{model} version {version} pushed (artefact sha256:{artifact})");
    }
    Ok(())
}
