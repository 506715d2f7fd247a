//! Purges: removing a tenant's content from every edge cache, by exact URL, by URL prefix
//! or by tag (`Surrogate-Key` / `Cache-Tag`), either hard (gone) or soft (marked stale, so
//! `stale-while-revalidate` may still serve it while it is refetched).
//!
//! A purge is an operation with an id and the configuration version it was issued at; it
//! reaches nodes in the edge snapshot, and a node has applied it once its acknowledged
//! edge version is at least that version.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError};

/// What a purge matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PurgeKind {
    /// Exact URLs, e.g. `http://www.demo.example/index.html`.
    Url,
    /// Every URL starting with the given ones, e.g. `http://www.demo.example/assets/`.
    Prefix,
    /// Every response tagged with one of the given tags.
    Tag,
}

/// How a purge acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PurgeMode {
    /// Remove the objects.
    #[default]
    Hard,
    /// Mark the objects stale: revalidated before being served fresh again.
    Soft,
}

/// A purge as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// The service; optional for URL and prefix purges (found from the URLs' host).
    #[serde(default)]
    pub service: Option<String>,
    pub kind: PurgeKind,
    /// URLs (url, prefix) or tags (tag).
    pub targets: Vec<String>,
    #[serde(default)]
    pub mode: PurgeMode,
}

/// A purge as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Purge {
    pub id: u64,
    pub service: String,
    pub kind: PurgeKind,
    pub targets: Vec<String>,
    pub mode: PurgeMode,
    /// The configuration version that carries it.
    pub version: u64,
    pub created_at: String,
}

/// Most targets in one purge request.
pub const MAX_PURGE_TARGETS: usize = 1000;

/// Splits `http(s)://host[:port]/path?query` into the lower-cased host (without port) and
/// the path with query.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if host.is_empty() || path.contains(char::is_whitespace) || host.contains('@') {
        return None;
    }
    Some((host.to_ascii_lowercase(), path.to_owned()))
}

impl Validate for PurgeRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(s) = &self.service {
            check_id("service", s)?;
        }
        if self.targets.is_empty() {
            return Err(ValidationError::new(
                "targets",
                "give at least one URL or tag",
            ));
        }
        if self.targets.len() > MAX_PURGE_TARGETS {
            return Err(ValidationError::new(
                "targets",
                format!("at most {MAX_PURGE_TARGETS} targets per purge; split the request"),
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("targets[{i}]");
            match self.kind {
                PurgeKind::Url | PurgeKind::Prefix => {
                    if split_url(t).is_none() {
                        return Err(ValidationError::new(
                            field,
                            format!("`{t}` is not an http:// or https:// URL"),
                        ));
                    }
                }
                PurgeKind::Tag => {
                    if t.is_empty()
                        || t.len() > 256
                        || t.contains(|c: char| c.is_whitespace() || c == ',')
                    {
                        return Err(ValidationError::new(
                            field,
                            format!("`{t}` is not a tag (no spaces or commas, 1 to 256 bytes)"),
                        ));
                    }
                }
            }
        }
        if self.kind == PurgeKind::Tag && self.service.is_none() {
            return Err(ValidationError::new(
                "service",
                "a tag purge needs the service",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            split_url("http://WWW.demo.example:8080/a?b=1"),
            Some(("www.demo.example".into(), "/a?b=1".into()))
        );
        assert_eq!(
            split_url("https://x.example"),
            Some(("x.example".into(), "/".into()))
        );
        assert_eq!(split_url("ftp://x/"), None);
        assert_eq!(split_url("http:///x"), None);
    }

    #[test]
    fn requests_are_checked() {
        let mut r = PurgeRequest {
            service: None,
            kind: PurgeKind::Url,
            targets: vec!["http://a.example/".into()],
            mode: PurgeMode::Hard,
        };
        assert!(r.validate().is_ok());
        r.targets.push("not a url".into());
        assert_eq!(r.validate().expect_err("bad url").field, "targets[1]");
        r.kind = PurgeKind::Tag;
        r.targets = vec!["t1".into()];
        assert_eq!(r.validate().expect_err("needs service").field, "service");
    }
}
