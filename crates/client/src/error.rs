//! Errors of the REST client: the API's own JSON errors, kept whole, and transport failures
//! with a hint of what to check.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control plane answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The control plane could not be reached.
    #[error(
        "cannot reach the control plane at {endpoint}: {source} (is `lingjing up` or `lingjing control` running? set --endpoint or LINGJING_ENDPOINT)"
    )]
    Unreachable {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The control plane's TLS certificate is not trusted (or not valid for its name).
    #[error(
        "the TLS certificate of the control plane at {endpoint} is not trusted: {detail} (give the CA that signed it with --ca FILE or LINGJING_CA; `lingjing up` keeps its CA in DATA_DIR/ca.pem)"
    )]
    Certificate { endpoint: String, detail: String },
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected answer from the control plane: {0}")]
    Decode(String),
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The field an API error names (`meter.samples[0].start_ms`, ...).
    pub fn field(&self) -> Option<&str> {
        match self {
            ClientError::Api { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The API's error code (`not_found`, `pool_exhausted`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Deserialize)]
pub(crate) struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub field: Option<String>,
}
