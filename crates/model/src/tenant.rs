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
}

impl Validate for Tenant {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        if let Some(c) = &self.contact {
            check_name("contact", c)?;
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
