//! Tags as S3 takes them: the `x-amz-tagging` header (a URL query, `k1=v1&k2=v2`) and the
//! `<Tagging><TagSet>` body of PutObjectTagging and PutBucketTagging, checked against S3's
//! limits before anything is written: at most [`MAX_OBJECT_TAGS`] per object version and
//! [`MAX_BUCKET_TAGS`] per bucket, keys of 1 to 128 characters and values of 0 to 256
//! (Unicode characters), each key once, no key starting with `aws:`, and only letters,
//! digits, spaces and `_ . : / = + - @`. Any violation is 400 `InvalidTag`; a header that is
//! no URL query is 400 `InvalidArgument`.
//!
//! Tags are stored with the version (or the bucket) by [`crate::meta`]; this module only
//! parses, checks and converts them.

use percent_encoding::percent_decode_str;
use s3s::S3Result;
use s3s::dto::{Tag, TagSet, Tagging};
use s3s::s3_error;

/// The most tags an object version has (S3's limit).
pub(crate) const MAX_OBJECT_TAGS: usize = 10;
/// The most tags a bucket has (S3's limit).
pub(crate) const MAX_BUCKET_TAGS: usize = 50;
/// The longest tag key, in characters.
const MAX_KEY_CHARS: usize = 128;
/// The longest tag value, in characters.
const MAX_VALUE_CHARS: usize = 256;

/// Tags, in the order they were given.
pub(crate) type Tags = Vec<(String, String)>;

/// Whether `c` may appear in a tag key or value (AWS's tag character set:
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]`).
fn allowed_char(c: char) -> bool {
    c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
}

/// Checks `tags` against S3's limits, `max` being the most a set may hold.
pub(crate) fn check(tags: &[(String, String)], max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "at most {max} tags are allowed, {} were given",
            tags.len()
        ));
    }
    for (i, (key, value)) in tags.iter().enumerate() {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_KEY_CHARS {
            return Err(s3_error!(
                InvalidTag,
                "a tag key has 1 to {MAX_KEY_CHARS} characters: {key:?} has {key_chars}"
            ));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(s3_error!(
                InvalidTag,
                "a tag value has at most {MAX_VALUE_CHARS} characters (the value of {key:?})"
            ));
        }
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(s3_error!(
                InvalidTag,
                "tag keys starting with aws: are reserved ({key:?})"
            ));
        }
        if !key.chars().all(allowed_char) {
            return Err(s3_error!(
                InvalidTag,
                "the tag key {key:?} holds a character tags may not have (letters, digits, spaces and _ . : / = + - @ only)"
            ));
        }
        if !value.chars().all(allowed_char) {
            return Err(s3_error!(
                InvalidTag,
                "the value of tag {key:?} holds a character tags may not have (letters, digits, spaces and _ . : / = + - @ only)"
            ));
        }
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(s3_error!(
                InvalidTag,
                "the tag key {key:?} is given more than once"
            ));
        }
    }
    Ok(())
}

/// One component of a URL query, decoded (`+` is a space, as in forms).
fn query_component(s: &str) -> S3Result<String> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            s3_error!(
                InvalidArgument,
                "x-amz-tagging is not a URL query of UTF-8 tags (key1=value1&key2=value2)"
            )
        })
}

/// The tags of an `x-amz-tagging` header (`key1=value1&key2=value2`, URL-encoded), checked
/// as an object's; an absent or empty header is no tags.
pub(crate) fn from_header(header: Option<&str>) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for pair in header.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        tags.push((query_component(key)?, query_component(value)?));
    }
    check(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

/// The tags of a `<Tagging>` body, checked with at most `max` tags.
pub(crate) fn from_tagging(tagging: &Tagging, max: usize) -> S3Result<Tags> {
    let mut tags = Tags::with_capacity(tagging.tag_set.len());
    for tag in &tagging.tag_set {
        match (&tag.key, &tag.value) {
            (Some(k), Some(v)) => tags.push((k.clone(), v.clone())),
            _ => {
                return Err(s3_error!(MalformedXML, "every Tag needs a Key and a Value"));
            }
        }
    }
    check(&tags, max)?;
    Ok(tags)
}

/// `tags` as a response's `<TagSet>`.
pub(crate) fn to_tag_set(tags: Tags) -> TagSet {
    tags.into_iter()
        .map(|(key, value)| Tag {
            key: Some(key),
            value: Some(value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    fn pairs(p: &[(&str, &str)]) -> Tags {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn code(r: S3Result<Tags>) -> S3ErrorCode {
        r.expect_err("refused").code().clone()
    }

    #[test]
    fn the_tagging_header_is_a_url_query() {
        assert_eq!(from_header(None).expect("none"), Tags::new());
        assert_eq!(from_header(Some("")).expect("empty"), Tags::new());
        assert_eq!(
            from_header(Some("team=web&env=prod%2Fblue&note=a+b&flag&empty=")).expect("parsed"),
            pairs(&[
                ("team", "web"),
                ("env", "prod/blue"),
                ("note", "a b"),
                ("flag", ""),
                ("empty", "")
            ])
        );
        assert_eq!(
            from_header(Some("caf%C3%A9=%E6%9D%B1")).expect("utf-8"),
            pairs(&[("café", "東")])
        );
        assert_eq!(
            code(from_header(Some("k=%FF"))),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(code(from_header(Some("=v"))), S3ErrorCode::InvalidTag);
        assert_eq!(code(from_header(Some("a=1&a=2"))), S3ErrorCode::InvalidTag);
    }

    #[test]
    fn limits_are_s3s() {
        let ten: Tags = (0..10).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        check(&ten, MAX_OBJECT_TAGS).expect("ten");
        let mut eleven = ten.clone();
        eleven.push(("k10".into(), "v".into()));
        assert!(check(&eleven, MAX_OBJECT_TAGS).is_err());
        check(&eleven, MAX_BUCKET_TAGS).expect("a bucket takes 50");
        let fifty_one: Tags = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(check(&fifty_one, MAX_BUCKET_TAGS).is_err());
        // Lengths count characters, not bytes.
        check(&pairs(&[(&"é".repeat(128), &"é".repeat(256))]), 10).expect("at the limits");
        for bad in [
            pairs(&[(&"k".repeat(129), "v")]),
            pairs(&[("k", &"v".repeat(257))]),
            pairs(&[("", "v")]),
            pairs(&[("aws:owner", "v")]),
            pairs(&[("AWS:owner", "v")]),
            pairs(&[("k", "a*b")]),
            pairs(&[("k#", "v")]),
            pairs(&[("k", "line\nbreak")]),
            pairs(&[("k", "1"), ("j", "2"), ("k", "3")]),
        ] {
            let e = check(&bad, MAX_OBJECT_TAGS).expect_err("refused");
            assert_eq!(*e.code(), S3ErrorCode::InvalidTag, "{bad:?}");
        }
        check(
            &pairs(&[("a b_c.d:e/f=g+h-i@j", "Ünïcode 東京 123"), ("awsx", "")]),
            10,
        )
        .expect("allowed characters");
    }

    #[test]
    fn tagging_bodies_need_keys_and_values() {
        let body = |tags: Vec<Tag>| Tagging { tag_set: tags };
        let ok = body(vec![Tag {
            key: Some("k".into()),
            value: Some(String::new()),
        }]);
        assert_eq!(
            from_tagging(&ok, MAX_OBJECT_TAGS).expect("ok"),
            pairs(&[("k", "")])
        );
        let missing = body(vec![Tag {
            key: Some("k".into()),
            value: None,
        }]);
        assert_eq!(
            *from_tagging(&missing, MAX_OBJECT_TAGS)
                .expect_err("refused")
                .code(),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            to_tag_set(pairs(&[("a", "1")])),
            vec![Tag {
                key: Some("a".into()),
                value: Some("1".into())
            }]
        );
    }
}
