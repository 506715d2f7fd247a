//! Validation of input: the `Validate` trait and the error that names the offending field.

use std::fmt;

/// Why an input was refused: the field (a JSON-path-like name such as `origins[1].weight`)
/// and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field with a parent path: `weight` inside `origins[1]` becomes
    /// `origins[1].weight`.
    pub fn within(mut self, parent: impl fmt::Display) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Self-contained checks of one resource (references to other resources are checked by
/// the control plane, which can see them).
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
}

/// A human-readable name: 1..=128 characters, no control characters.
pub fn check_name(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.chars().count() > 128 {
        return Err(ValidationError::new(
            field,
            "must be at most 128 characters",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a list has no duplicates, naming the first repeated entry (linear: one hash
/// set, whatever the list's length).
pub fn check_unique<T: Eq + std::hash::Hash + fmt::Display>(
    field: &str,
    items: &[T],
) -> Result<(), ValidationError> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !seen.insert(item) {
            return Err(ValidationError::new(
                format!("{field}[{i}]"),
                format!("`{item}` is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Checks a list is at most `max` long, naming the limit.
pub fn check_max_items<T>(field: &str, items: &[T], max: usize) -> Result<(), ValidationError> {
    if items.len() > max {
        return Err(ValidationError::new(
            field,
            format!(
                "{} entries is over the limit of {max}; split them over several resources or ask the operator",
                items.len()
            ),
        ));
    }
    Ok(())
}
