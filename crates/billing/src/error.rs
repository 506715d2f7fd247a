//! The crate's one error type: a named field and what is wrong with it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What went wrong, naming the offending field (`cdn.overage_per_mbps`,
/// `sla.schedule[1].credit_percent`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BillingError {
    /// A value is out of range or malformed.
    #[error("`{field}`: {message}")]
    Invalid {
        /// Dotted path of the field, with list indices (`sla.schedule[0].below_percent`).
        field: String,
        /// What the field must be.
        message: String,
    },
}

impl BillingError {
    /// Shorthand for [`BillingError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        BillingError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field() {
        let e = BillingError::invalid("cdn.overage_per_mbps", "must be at least 0");
        assert_eq!(e.to_string(), "`cdn.overage_per_mbps`: must be at least 0");
    }
}
