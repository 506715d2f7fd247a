//! Errors: `StoreError` from the store and `ApiError`, the one place where failures become
//! HTTP statuses and the JSON body `{ "error": { "code", "message", "field"? } }`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lingjing_model::ValidationError;
use serde::Serialize;
use utoipa::ToSchema;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}`: use `sqlite://PATH` or `postgres://...`")]
    UnsupportedUrl(String),
}

/// An API failure, with the HTTP status and stable `code` it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(ValidationError),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// A service the control plane relies on (an S3 gateway) failed or did not answer
    /// (502, `bad_gateway`).
    #[error("{0}")]
    BadGateway(String),
    /// A request body over the route's size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A tenant quota the operator set is used up (403, `quota_exceeded`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Too many requests of a kind per minute (429, `rate_limited`).
    #[error("{message}")]
    RateLimited { message: String, retry_after_s: u64 },
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(ValidationError::new(field, message))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        ApiError::NotFound(format!("{kind} `{id}` does not exist"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict { code, .. } => code,
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::TooLarge(_) => "too_large",
            ApiError::QuotaExceeded(_) => "quota_exceeded",
            ApiError::RateLimited { .. } => "rate_limited",
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid`, `not_found`, `pool_exhausted`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The offending field of the request body, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = match &self {
            ApiError::Invalid(v) => Some(v.field.clone()),
            ApiError::Conflict { field, .. } => field.clone(),
            _ => None,
        };
        let message = match &self {
            ApiError::Invalid(v) => format!("{}: {}", v.field, v.message),
            other => other.to_string(),
        };
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %message, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                field,
            },
        };
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Some(s) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Database(sqlx::Error::Database(db)) = &e {
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    return ApiError::conflict("conflict", format!("already exists: {db}"));
                }
                sqlx::error::ErrorKind::ForeignKeyViolation => {
                    return ApiError::conflict(
                        "in_use",
                        format!("refers to or is referred to by another resource: {db}"),
                    );
                }
                _ => {}
            }
        }
        if let StoreError::Database(sqlx::Error::PoolTimedOut) = &e {
            return ApiError::Unavailable("the database is busy; retry shortly".into());
        }
        ApiError::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}
