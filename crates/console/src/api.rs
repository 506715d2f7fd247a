//! Calling the REST API in-process: a request goes through the API's router (its
//! extractors, permission checks and validation) as if it had come over the wire, with
//! the session's credential as the bearer token.

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// The largest API answer a page reads (a fleet of thousands of nodes fits many times).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// The API's router, called without a socket.
#[derive(Clone)]
pub struct InProcess {
    router: Router,
}

/// Why an API call did not succeed: the API's own error (status, code, message and the
/// field it names), or a failure to reach or read it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// The request field the error is about (e.g. `hostnames[0]`), for a form to show the
    /// message beside it.
    pub field: Option<String>,
}

impl Failure {
    fn internal(message: String) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message,
            field: None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    field: Option<String>,
}

impl InProcess {
    pub fn new(router: Router) -> InProcess {
        InProcess { router }
    }

    /// `GET path` as `credential`, the answer parsed as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        credential: &str,
        path: &str,
    ) -> Result<T, Failure> {
        self.call(Method::GET, credential, path, None).await
    }

    /// `GET path` of a list as `credential`: the items and how many there are in all
    /// (the API's `X-Total-Count`).
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        credential: &str,
        path: &str,
    ) -> Result<(Vec<T>, Option<u64>), Failure> {
        let (items, headers) = self.exchange(Method::GET, credential, path, None).await?;
        let total = headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((items, total))
    }

    /// `method path` with `body` (JSON) as `credential`, the answer parsed as `T`
    /// (`serde_json::Value` when it does not matter; an empty answer reads as `null`).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        credential: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Failure> {
        self.exchange(method, credential, path, body)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`Self::call`], with the answer's headers.
    async fn exchange<T: DeserializeOwned>(
        &self,
        method: Method,
        credential: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(T, http::HeaderMap), Failure> {
        let (headers, bytes) = self.raw(method, credential, path, body).await?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(|answer| (answer, headers))
            .map_err(|e| {
                Failure::internal(format!("the API's answer to {path} did not parse: {e}"))
            })
    }

    /// `method path` as `credential`: a successful answer's headers and bytes as they
    /// are (a CSV, say), or the API's error.
    pub async fn raw(
        &self,
        method: Method,
        credential: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(http::HeaderMap, axum::body::Bytes), Failure> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {credential}"));
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(json).map_err(|e| Failure::internal(e.to_string()))?)
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| Failure::internal(format!("request to {path}: {e}")))?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| Failure::internal(format!("{path}: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Failure::internal(format!("reading {path}: {e}")))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => Failure {
                    status,
                    code: e.error.code,
                    message: e.error.message,
                    field: e.error.field,
                },
                Err(_) => Failure {
                    status,
                    code: "unknown".into(),
                    message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                    field: None,
                },
            });
        }
        Ok((headers, bytes))
    }
}
