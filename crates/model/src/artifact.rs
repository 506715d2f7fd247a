//! Content-addressed artefacts (the files edge nodes fetch, e.g. ONNX models): named by
//! the SHA-256 of their bytes, written once, never overwritten.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::ValidationError;

/// The largest artefact the control plane keeps (1 GiB).
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// An artefact as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactInfo {
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub digest: String,
    pub size: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// Checks a SHA-256 digest as artefacts are named: 64 lower-case hex digits.
pub fn check_digest(field: &str, digest: &str) -> Result<(), ValidationError> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "`{}` is not a SHA-256 digest: 64 lower-case hex digits (sha256sum FILE)",
                digest.chars().take(80).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_64_lower_case_hex_digits() {
        let ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(check_digest("digest", ok).is_ok());
        assert!(check_digest("digest", &ok.to_uppercase()).is_err());
        assert!(check_digest("digest", &ok[1..]).is_err());
        assert!(check_digest("digest", "../../etc/passwd").is_err());
    }
}
