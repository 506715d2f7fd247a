//! The standard fields S3 keeps with an object besides `Content-Type` — `Cache-Control`,
//! `Content-Disposition`, `Content-Encoding` and `Content-Language` — set on PutObject,
//! CreateMultipartUpload and CopyObject (with `REPLACE`), returned by GetObject and
//! HeadObject. A CDN serving a bucket lives by `Cache-Control`. They are stored among the
//! version's metadata pairs under names starting with `:`, which no `x-amz-meta-*` name can
//! have, so the stored format is unchanged; [`split`] takes them out again before user
//! metadata is shown.

/// The stored names, in the order of [`Fields`].
const NAMES: [&str; 4] = [
    ":cache-control",
    ":content-disposition",
    ":content-encoding",
    ":content-language",
];

/// The kept fields of one version: Cache-Control, Content-Disposition, Content-Encoding,
/// Content-Language.
pub(crate) type Fields = [Option<String>; 4];

/// The pairs to store: the user's metadata, then the fields that are set.
pub(crate) fn join(
    user: impl IntoIterator<Item = (String, String)>,
    fields: Fields,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = user.into_iter().collect();
    for (name, value) in NAMES.iter().zip(fields) {
        if let Some(v) = value {
            out.push(((*name).to_owned(), v));
        }
    }
    out
}

/// The pairs a write stores (PutObject, CreateMultipartUpload, CopyObject with
/// `REPLACE`): the user metadata of input `$input` (moved out of it, or cloned), the
/// storage class `$class`'s pair, and the kept fields.
macro_rules! stored_metadata {
    (move $input:ident, $class:expr) => {
        $crate::gateway::kept::join(
            $input
                .metadata
                .unwrap_or_default()
                .into_iter()
                .chain($class.pair()),
            [
                $input.cache_control,
                $input.content_disposition,
                $input.content_encoding,
                $input.content_language,
            ],
        )
    };
    (clone $input:ident, $class:expr) => {
        $crate::gateway::kept::join(
            $input
                .metadata
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain($class.pair()),
            [
                $input.cache_control.clone(),
                $input.content_disposition.clone(),
                $input.content_encoding.clone(),
                $input.content_language.clone(),
            ],
        )
    };
}
pub(crate) use stored_metadata;

/// The stored pairs split into the user's metadata and the kept fields.
pub(crate) fn split(stored: Vec<(String, String)>) -> (Vec<(String, String)>, Fields) {
    let mut fields: Fields = Default::default();
    let mut user = Vec::with_capacity(stored.len());
    for (name, value) in stored {
        match NAMES.iter().position(|n| *n == name) {
            Some(i) => fields[i] = Some(value),
            None if name.starts_with(':') => {}
            None => user.push((name, value)),
        }
    }
    (user, fields)
}

/// What a GET or HEAD shows of a version's stored pairs: its user metadata, the kept
/// fields, and its storage class (left out for `STANDARD`, as S3 does).
pub(crate) struct Shown {
    pub(crate) metadata: s3s::dto::Metadata,
    pub(crate) cache_control: Option<String>,
    pub(crate) content_disposition: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) content_language: Option<String>,
    pub(crate) storage_class: Option<s3s::dto::StorageClass>,
}

/// The [`Shown`] of the stored pairs `stored`.
pub(crate) fn shown(stored: Vec<(String, String)>) -> Shown {
    let class = super::class::Class::of_metadata(&stored);
    let (
        user,
        [
            cache_control,
            content_disposition,
            content_encoding,
            content_language,
        ],
    ) = split(stored);
    Shown {
        metadata: user.into_iter().collect(),
        cache_control,
        content_disposition,
        content_encoding,
        content_language,
        storage_class: class
            .cold()
            .then(|| s3s::dto::StorageClass::from_static(class.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_fields_round_trip_apart_from_user_metadata() {
        let stored = join(
            [("colour".to_owned(), "blue".to_owned())],
            [Some("max-age=60".into()), None, Some("gzip".into()), None],
        );
        let (user, fields) = split(stored);
        assert_eq!(user, vec![("colour".to_owned(), "blue".to_owned())]);
        assert_eq!(
            fields,
            [Some("max-age=60".into()), None, Some("gzip".into()), None]
        );
    }
}
