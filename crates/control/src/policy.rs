//! The operator's trust settings for what tenants may name and point at: networks an
//! origin may use though not public (`--allow-origin`), service ids reserved as labels of
//! the platform zone (`--reserved-label`), the resolver that checks domain control
//! (`--challenge-resolver`), and per-tenant defaults for quotas.

use std::net::SocketAddr;
use std::time::Duration;

use lingjing_model::origin_policy::Allowance;

/// Labels of the platform zone that no service id may take, besides the operator's static
/// records and `TrustPolicy::reserved_labels`. A trailing `*` matches any label starting
/// with what precedes it.
pub const BUILTIN_RESERVED_LABELS: &[&str] = &[
    "www",
    "ns*",
    "api",
    "s3",
    "console",
    "admin",
    "mail",
    "smtp",
    "imap",
    "ftp",
    "status",
    "localhost",
];

/// What the operator allows tenants beyond the defaults.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Networks (`10.0.0.0/8`) or endpoints (`127.0.0.1:7900`) an origin may use although
    /// they are not public addresses. Platform addresses stay refused.
    pub allow_origins: Vec<String>,
    /// More service ids to reserve (a trailing `*` reserves a prefix).
    pub reserved_labels: Vec<String>,
    /// The DNS resolver asked for `_lingjing-challenge` TXT records; `None`: the system's.
    pub challenge_resolver: Option<SocketAddr>,
    /// How long an unverified hostname claim keeps other tenants off the name.
    pub pending_ttl: Duration,
}

/// How long an unverified hostname claim holds the name by default: three days.
pub const DEFAULT_PENDING_TTL: Duration = Duration::from_secs(72 * 3600);

impl Default for TrustPolicy {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            reserved_labels: Vec::new(),
            challenge_resolver: None,
            pending_ttl: DEFAULT_PENDING_TTL,
        }
    }
}

impl TrustPolicy {
    /// Checks the settings, naming the bad one.
    pub fn check(&self) -> Result<(), String> {
        for a in &self.allow_origins {
            a.parse::<Allowance>()
                .map_err(|e| format!("--allow-origin: {e}"))?;
        }
        for l in &self.reserved_labels {
            let ok = !l.is_empty()
                && l.trim_end_matches('*')
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(format!(
                    "--reserved-label `{l}`: give a lowercase DNS label, optionally ending in `*`"
                ));
            }
        }
        Ok(())
    }

    /// The reserved pattern `label` falls under, if any.
    pub fn reserved(&self, label: &str) -> Option<String> {
        let label = label.to_ascii_lowercase();
        BUILTIN_RESERVED_LABELS
            .iter()
            .map(|s| s.to_string())
            .chain(self.reserved_labels.iter().cloned())
            .find(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => label.starts_with(prefix),
                None => *pattern == label,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_labels() {
        let p = TrustPolicy {
            reserved_labels: vec!["cdn-*".into(), "billing".into()],
            ..Default::default()
        };
        for r in ["www", "WWW", "ns", "ns1", "api", "cdn-x", "billing"] {
            assert!(p.reserved(r).is_some(), "{r}");
        }
        for ok in ["demo", "shop", "wwwx", "apis", "cdn"] {
            assert!(p.reserved(ok).is_none(), "{ok}");
        }
        assert!(p.check().is_ok());
        let bad = TrustPolicy {
            allow_origins: vec!["nope".into()],
            ..Default::default()
        };
        assert!(bad.check().is_err());
    }
}
