//! The operator's edge AI models (EdgeAIoT): every model with its number of versions and
//! the latest, and a model's versions (artefact, input, what the output means, whether a
//! self-test guards it), newest first (`/v1/models`).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use lingjing_model::aiot::{ModelVersion, OutputSpec};
use serde::Deserialize;

use super::fleet::encode;
use super::{Chrome, Operator, Shared, failure_page, render};
use crate::format::{When, word};

#[derive(Debug, Deserialize)]
struct Summary {
    model: String,
    versions: u64,
    latest: u32,
    updated_at: String,
}

struct ModelRow {
    model: String,
    versions: u64,
    latest: u32,
    updated: When,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    chrome: Chrome,
    models: Vec<ModelRow>,
}

/// `GET /models`.
pub async fn list(State(console): State<Shared>, Operator(session): Operator) -> Response {
    let models: Vec<Summary> = match console.api.get(&session.credential, "/v1/models").await {
        Ok(m) => m,
        Err(f) => return failure_page(&session, f),
    };
    render(&ModelsPage {
        chrome: Chrome::new(&session, "Models", "models"),
        models: models
            .into_iter()
            .map(|m| ModelRow {
                updated: When::of(Some(&m.updated_at)),
                model: m.model,
                versions: m.versions,
                latest: m.latest,
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
struct Record {
    #[serde(flatten)]
    version: serde_json::Value,
    created_at: String,
}

struct VersionRow {
    version: u32,
    artifact: String,
    input: String,
    output: String,
    self_test: bool,
    notes: String,
    created: When,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    chrome: Chrome,
    versions: Vec<VersionRow>,
}

/// `GET /models/{model}`.
pub async fn show(
    State(console): State<Shared>,
    Operator(session): Operator,
    Path(model): Path<String>,
) -> Response {
    let path = format!("/v1/models/{}/versions", encode(&model));
    let records: Vec<Record> = match console.api.get(&session.credential, &path).await {
        Ok(r) => r,
        Err(f) => return failure_page(&session, f),
    };
    let versions = records
        .into_iter()
        .filter_map(|mut r| {
            if let Some(o) = r.version.as_object_mut() {
                o.remove("created_at");
            }
            let v: ModelVersion = serde_json::from_value(r.version).ok()?;
            Some(VersionRow {
                version: v.version,
                artifact: v.artifact.chars().take(12).collect(),
                input: format!(
                    "{} {}, {} {}",
                    v.input
                        .shape
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("x"),
                    word(&v.input.layout),
                    word(&v.input.color),
                    word(&v.input.resize)
                ),
                output: match &v.output {
                    OutputSpec::Classifier { labels, .. } => {
                        format!("classifier: {}", labels.join(", "))
                    }
                    OutputSpec::Detector {
                        classes,
                        score_threshold,
                        ..
                    } => format!(
                        "detector: {} (score at least {score_threshold})",
                        classes.join(", ")
                    ),
                },
                self_test: v.self_test.is_some(),
                notes: v.notes.unwrap_or_default(),
                created: When::of(Some(&r.created_at)),
            })
        })
        .collect();
    render(&ModelPage {
        chrome: Chrome::new(&session, format!("Model {model}"), "models"),
        versions,
    })
}
