//! Storage classes (`x-amz-storage-class` on PutObject, CreateMultipartUpload and
//! CopyObject): how an object's blocks are kept. `STANDARD` (the default) as the cluster's
//! policy says (copies, or coded above a size when `--storage-erasure` is set); the
//! instant-retrieval infrequent-access classes `STANDARD_IA`, `ONEZONE_IA` and `GLACIER_IR`
//! are cold data, erasure-coded (with the policy's code, or
//! `crate::replicas::DEFAULT_COLD_CODE`) wherever the cluster has the nodes for it, at
//! about half the disk of three copies. The class is kept with the object (a `:`-named
//! pair, like the fields in `super::kept`) and shown by GET, HEAD and the listings. Other
//! classes (archives that need a restore, one-zone express, outposts, ...) are refused
//! with `InvalidStorageClass`.

use s3s::dto::StorageClass;
use s3s::{S3Result, s3_error};

/// The metadata pair a non-standard class is kept under.
pub(crate) const STORED: &str = ":storage-class";

/// The classes kept as cold data.
const COLD: [&str; 3] = [
    StorageClass::STANDARD_IA,
    StorageClass::ONEZONE_IA,
    StorageClass::GLACIER_IR,
];

/// A storage class this gateway keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Standard,
    /// Erasure-coded cold data, by its S3 name.
    Cold(&'static str),
}

impl Class {
    /// The class a request asks for (none: `STANDARD`).
    pub(crate) fn requested(class: Option<&StorageClass>) -> S3Result<Class> {
        let Some(class) = class else {
            return Ok(Class::Standard);
        };
        let name = class.as_str();
        if name == StorageClass::STANDARD {
            return Ok(Class::Standard);
        }
        match COLD.iter().find(|c| **c == name) {
            Some(c) => Ok(Class::Cold(c)),
            None => Err(s3_error!(
                InvalidStorageClass,
                "storage class {name:?} is not offered: use STANDARD, or STANDARD_IA, ONEZONE_IA or GLACIER_IR (erasure-coded)"
            )),
        }
    }

    /// The class an object was stored with (`stored`: its `:storage-class` pair).
    pub(crate) fn of(stored: Option<&str>) -> Class {
        stored
            .and_then(|s| COLD.iter().find(|c| **c == s))
            .map_or(Class::Standard, |c| Class::Cold(c))
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Standard => StorageClass::STANDARD,
            Class::Cold(name) => name,
        }
    }

    pub(crate) fn cold(self) -> bool {
        matches!(self, Class::Cold(_))
    }

    /// The pair to keep with the object (none for `STANDARD`).
    pub(crate) fn pair(self) -> Option<(String, String)> {
        match self {
            Class::Standard => None,
            Class::Cold(name) => Some((STORED.to_owned(), name.to_owned())),
        }
    }

    /// The class of an object whose stored metadata pairs are `metadata`.
    pub(crate) fn of_metadata(metadata: &[(String, String)]) -> Class {
        Class::of(
            metadata
                .iter()
                .find(|(k, _)| k == STORED)
                .map(|(_, v)| v.as_str()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_parsed_kept_and_read_back() {
        assert_eq!(Class::requested(None).expect("none"), Class::Standard);
        let ia = Class::requested(Some(&StorageClass::from_static(StorageClass::STANDARD_IA)))
            .expect("ia");
        assert!(ia.cold());
        let (k, v) = ia.pair().expect("pair");
        assert_eq!(Class::of_metadata(&[(k, v)]), ia);
        assert_eq!(Class::of_metadata(&[]), Class::Standard);
        for refused in [StorageClass::GLACIER, StorageClass::DEEP_ARCHIVE, "FANCY"] {
            let e =
                Class::requested(Some(&StorageClass::from(refused.to_owned()))).expect_err(refused);
            assert_eq!(e.code().as_str(), "InvalidStorageClass");
        }
    }
}
