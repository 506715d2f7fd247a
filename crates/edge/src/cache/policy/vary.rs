//! Selecting a stored variant by the request fields a response varies on (RFC 9111 §4.1).

use http::header::{self, HeaderMap, HeaderName};

use super::cache_control::{normalized_field, split_list};

/// A response with `Vary: *` (RFC 9111 §4.1): it never matches a later request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaryStar;

impl std::fmt::Display for VaryStar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vary: * matches no request")
    }
}

impl std::error::Error for VaryStar {}

/// The request fields a response varies on (RFC 9111 §4.1): the names in all its `Vary`
/// lines, lower-cased, deduplicated and sorted (so that the order the origin lists them
/// in does not matter). `Err(VaryStar)` for `*`. An element that is not a valid field
/// name is skipped: no request can carry such a field, so it matches all alike.
pub fn vary_fields(res: &HeaderMap) -> Result<Vec<HeaderName>, VaryStar> {
    let mut fields: Vec<HeaderName> = Vec::new();
    for line in res.get_all(header::VARY) {
        for element in split_list(line.as_bytes()) {
            if element == b"*" {
                return Err(VaryStar);
            }
            if let Ok(name) = HeaderName::from_bytes(element)
                && !fields.contains(&name)
            {
                fields.push(name);
            }
        }
    }
    fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(fields)
}

/// The secondary key of a request for a response varying on `fields` (RFC 9111 §4.1): a
/// stored variant is selected when its signature equals the request's. One ` name=value`
/// per field (space separated), the value normalised (field lines and list elements
/// joined with `,`, whitespace around elements trimmed; case kept) and escaped like a
/// cache key; a missing field is ` name` alone, so it differs from an empty one. Empty for
/// no fields. The proxy may normalise fields like `Accept-Encoding` itself beforehand.
pub fn vary_signature(fields: &[HeaderName], req: &HeaderMap) -> String {
    let mut out = String::new();
    for (i, name) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(name.as_str());
        if let Some(value) = normalized_field(req, name) {
            out.push('=');
            crate::cache::key::push_escaped(&mut out, &value, &[]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::testing::*;

    #[test]
    fn vary_fields_and_signatures() {
        let res = headers(&[
            ("vary", "Accept-Encoding, accept-language"),
            ("vary", "ACCEPT-ENCODING"),
        ]);
        let fields = vary_fields(&res).unwrap();
        assert_eq!(fields, ["accept-encoding", "accept-language"]);
        assert_eq!(vary_fields(&headers(&[("vary", "a, *")])), Err(VaryStar));
        assert_eq!(
            vary_fields(&HeaderMap::new()).unwrap(),
            Vec::<HeaderName>::new()
        );
        assert_eq!(
            vary_fields(&headers(&[("vary", "bad name, , x")])).unwrap(),
            ["x"]
        );

        let sig = |req: &[(&str, &str)]| vary_signature(&fields, &headers(req));
        assert_eq!(
            sig(&[("accept-encoding", "gzip, br"), ("accept-language", "en")]),
            "accept-encoding=gzip,br accept-language=en"
        );
        assert_eq!(
            sig(&[("accept-encoding", "gzip,br"), ("accept-language", "en")]),
            sig(&[
                ("accept-encoding", " gzip "),
                ("accept-encoding", "br"),
                ("accept-language", "en")
            ])
        );
        // Missing differs from empty.
        assert_eq!(sig(&[]), "accept-encoding accept-language");
        assert_eq!(
            sig(&[("accept-encoding", ""), ("accept-language", "")]),
            "accept-encoding= accept-language="
        );
        // Values stay case-sensitive, and a value cannot imitate another field.
        assert_ne!(
            sig(&[("accept-encoding", "GZIP")]),
            sig(&[("accept-encoding", "gzip")])
        );
        assert_ne!(
            sig(&[("accept-encoding", "x accept-language=en")]),
            sig(&[("accept-encoding", "x"), ("accept-language", "en")])
        );
        assert_eq!(vary_signature(&[], &headers(&[("a", "b")])), "");
    }
}
