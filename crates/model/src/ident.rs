//! Resource identifiers: operator-chosen slugs such as `cn-js-wuxi` or `wuxi-telecom-1`.
//!
//! An id is 1..=63 characters of lowercase ASCII letters, digits and `-`, starting with a
//! letter or digit and not ending with `-`: it is safe in URLs, file names and DNS labels
//! (a service id is also the label of its CNAME target in the platform zone).

use crate::validate::ValidationError;

pub const MAX_ID_LEN: usize = 63;

/// Checks that `value` is a valid id; `field` names it in the error.
pub fn check_id(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(ValidationError::new(
            field,
            format!("`{c}` is not allowed: use lowercase letters, digits and `-`"),
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(ValidationError::new(
            field,
            "must not start or end with `-`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs_and_refuses_the_rest() {
        for ok in ["a", "cn-js-wuxi", "node-1", "0a"] {
            assert!(check_id("id", ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a.b", "é", &"x".repeat(64)] {
            assert!(check_id("id", bad).is_err(), "{bad}");
        }
    }
}
