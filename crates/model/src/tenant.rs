//! Tenants: the operator's customers. Each has API keys that see and change only its own
//! services.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_name};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Slug, e.g. `demo`.
    pub id: String,
    pub name: String,
    /// Who to call about this tenant.
    #[serde(default)]
    pub contact: Option<String>,
    /// What the tenant may use, set by the operator.
    #[serde(default)]
    pub quotas: TenantQuotas,
}

/// Per-tenant quotas, set by the operator (a tenant key can read them, not change them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TenantQuotas {
    /// Most services the tenant may have.
    pub services: u32,
    /// Most purges the tenant may issue per minute.
    pub purges_per_minute: u32,
}

impl Default for TenantQuotas {
    fn default() -> Self {
        Self {
            services: 100,
            purges_per_minute: 60,
        }
    }
}

/// Most API keys per tenant.
pub const MAX_API_KEYS: usize = 10;

impl Validate for Tenant {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        if let Some(c) = &self.contact {
            check_name("contact", c)?;
        }
        if self.quotas.services > 100_000 || self.quotas.purges_per_minute > 100_000 {
            return Err(ValidationError::new(
                "quotas",
                "each quota must be at most 100000",
            ));
        }
        Ok(())
    }
}

/// A tenant API key as listed (the secret itself is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyInfo {
    /// The key's public id (the part before the secret).
    pub id: String,
    pub tenant: String,
    pub created_at: String,
}

/// A freshly created tenant API key: `secret` is shown only this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewApiKey {
    pub id: String,
    pub tenant: String,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Who a bearer credential speaks for (`GET /v1/whoami`): what a console or a script
/// asks before it shows the operator's or a tenant's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// `operator` or `tenant`.
    pub role: String,
    /// The tenant, for a tenant API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Most S3 access keys per tenant.
pub const MAX_S3_KEYS: usize = 10;

/// A tenant's S3 access key, as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct S3KeyInfo {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key: String,
    pub tenant: String,
    pub created_at: String,
}

/// The prefix of a tenant's console S3 key (`W` is not a hex digit, so no other key has
/// it).
pub const CONSOLE_S3_KEY_PREFIX: &str = "LJW";

/// The S3 key the web console browses a tenant's buckets with, and where the S3 API is:
/// one per tenant, made on first use, listed and revoked like any other key (a revoked one
/// is replaced at the next use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleS3Access {
    pub access_key: String,
    pub secret: String,
    pub tenant: String,
    /// `host:port` of the S3 gateways that are up (plain HTTP, path-style).
    pub gateways: Vec<String>,
    /// The key was made by this call (gateways accept it once they have applied the next
    /// snapshot, a few seconds).
    pub created: bool,
}

/// A freshly created S3 access key: `secret` is shown by the API only this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewS3Key {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: String,
    pub tenant: String,
}
