//! The typed REST client: one method per HTTP verb over JSON, errors decoded from the
//! API's `{ "error": ... }` bodies. Over HTTPS it trusts the system's roots plus, when
//! given, the CA file of a private control plane (`lingjing up` makes one).

use std::path::Path;
use std::time::Duration;

use lingjing_model::snapshot::{Heartbeat, Role, Snapshot};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ClientError, ErrorBody};

/// A client of one control plane, with one token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

/// Most bytes of an error answer read (a server, or a cache on the way, may send a huge
/// one; the message needs only its start).
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// The start of an error answer's body, as text.
async fn error_text(mut res: Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = MAX_ERROR_BYTES - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= MAX_ERROR_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Client {
    /// `endpoint` like `https://127.0.0.1:7700`; `token` is the operator token, a tenant
    /// key or a node credential.
    pub fn new(endpoint: &str, token: &str) -> Result<Client, ClientError> {
        Client::with_ca(endpoint, token, None)
    }

    /// Like [`Client::new`], also trusting the CA certificates (PEM) in the file `ca`.
    pub fn with_ca(endpoint: &str, token: &str, ca: Option<&Path>) -> Result<Client, ClientError> {
        Client::from_address(endpoint, token, ca, None)
    }

    /// Like [`Client::with_ca`], connecting from `local` (this host's address to use).
    pub fn from_address(
        endpoint: &str,
        token: &str,
        ca: Option<&Path>,
        local: Option<std::net::IpAddr>,
    ) -> Result<Client, ClientError> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "endpoint `{endpoint}` must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Below the control plane's idle timeout, so a pooled connection is never
            // reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(20))
            .local_address(local);
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Config(format!(
                    "cannot read the CA file {}: {e} (--ca FILE or LINGJING_CA)",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Config(format!(
                    "the CA file {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Config(format!(
                    "the CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build()?;
        Ok(Client {
            http,
            endpoint,
            token: token.trim().to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.endpoint));
        // No credential (an edge's artefact relay, a join-token exchange): none sent.
        if self.token.is_empty() {
            req
        } else {
            req.bearer_auth(&self.token)
        }
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let res = req.send().await.map_err(|e| {
            if let Some(detail) = certificate_problem(&e) {
                ClientError::Certificate {
                    endpoint: self.endpoint.clone(),
                    detail,
                }
            } else if e.is_connect() || e.is_timeout() {
                ClientError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    source: e,
                }
            } else {
                ClientError::Http(e)
            }
        })?;
        if res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let text = error_text(res).await;
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
                field: b.error.field,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http".into(),
                message: format!("HTTP {status}: {}", text.trim()),
                field: None,
            },
        })
    }

    async fn json<T: DeserializeOwned>(res: Response) -> Result<T, ClientError> {
        let bytes = res.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET path`, the response not yet read (for a download streamed to disk); with
    /// `host`, sent with that Host header (a name the server routes by, e.g. an edge's
    /// artefact relay).
    pub async fn get_response(
        &self,
        path: &str,
        host: Option<&str>,
    ) -> Result<Response, ClientError> {
        let mut req = self.request(Method::GET, path);
        if let Some(h) = host {
            req = req.header(reqwest::header::HOST, h);
        }
        self.send(req).await
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::json(self.send(self.request(Method::GET, path)).await?).await
    }

    /// `GET path` as text (CSV, HTML).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        Ok(self
            .send(self.request(Method::GET, path))
            .await?
            .text()
            .await?)
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        Self::json(
            self.send(self.request(Method::POST, path).json(body))
                .await?,
        )
        .await
    }

    /// `POST path` with a plain-text body, decoded.
    pub async fn post_text<T: DeserializeOwned>(
        &self,
        path: &str,
        body: String,
    ) -> Result<T, ClientError> {
        let req = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        Self::json(self.send(req).await?).await
    }

    /// `PUT path` with a JSON body, decoded.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        Self::json(
            self.send(self.request(Method::PUT, path).json(body))
                .await?,
        )
        .await
    }

    /// `PUT path` with `len` bytes of `body` (`application/octet-stream`, streamed), the
    /// answer decoded.
    pub async fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        len: u64,
        body: reqwest::Body,
    ) -> Result<T, ClientError> {
        let req = self
            .request(Method::PUT, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        Self::json(self.send(req).await?).await
    }

    /// Whether `HEAD path` finds something (200: true, 404: false; anything else is an
    /// error).
    pub async fn exists(&self, path: &str) -> Result<bool, ClientError> {
        match self.send(self.request(Method::HEAD, path)).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, path)).await?;
        Ok(())
    }

    /// Long-polls the snapshot of `role` newer than `after`; `None` when nothing newer came
    /// within `wait`.
    pub async fn poll_snapshot<T: DeserializeOwned>(
        &self,
        role: Role,
        node: &str,
        after: u64,
        wait: Duration,
    ) -> Result<Option<Snapshot<T>>, ClientError> {
        let path = format!(
            "/v1/snapshots/{role}?node={node}&after={after}&timeout_ms={}",
            wait.as_millis()
        );
        let req = self
            .request(Method::GET, &path)
            .timeout(wait + Duration::from_secs(10));
        let res = self.send(req).await?;
        if res.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        Self::json(res).await.map(Some)
    }

    /// Exchanges a one-time join token for `node`'s credential (needs no token of its own).
    pub async fn exchange_join_token(
        &self,
        node: &str,
        join_token: &str,
    ) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct Credential {
            credential: String,
        }
        let req = self
            .http
            .post(format!("{}/v1/nodes/{node}/credential", self.endpoint))
            .timeout(Duration::from_secs(30))
            .json(&serde_json::json!({ "join_token": join_token.trim() }));
        let c: Credential = Self::json(self.send(req).await?).await?;
        Ok(c.credential)
    }

    /// Reports `node` alive with what it has applied (the first call registers it).
    pub async fn heartbeat(&self, node: &str, beat: &Heartbeat) -> Result<(), ClientError> {
        let req = self
            .request(Method::POST, &format!("/v1/nodes/{node}/heartbeat"))
            .timeout(Duration::from_secs(10))
            .json(beat);
        self.send(req).await?;
        Ok(())
    }
}

/// The TLS certificate problem behind a failed request, if that is what failed it.
fn certificate_problem(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if text.contains("certificate") || text.contains("UnknownIssuer") {
            return Some(text);
        }
        source = err.source();
    }
    None
}
