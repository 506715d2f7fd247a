//! Lines: named client networks (usually carriers: telecom, unicom, mobile, ...) defined by
//! CIDR prefixes, each optionally tagged with the region its clients are in; and the plain
//! `CIDR line [region]` file format operators keep their per-carrier lists in.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_name};

/// A client network. Its prefixes are held apart (there can be 100,000 of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Slug, e.g. `telecom`.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl Validate for Line {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_name("name", &self.name)?;
        if let Some(d) = &self.description
            && d.len() > 1024
        {
            return Err(ValidationError::new(
                "description",
                "must be at most 1024 bytes",
            ));
        }
        Ok(())
    }
}

/// One prefix of a line: clients in `cidr` are on `line`, in `region` when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinePrefix {
    #[schema(value_type = String, example = "198.51.100.0/24")]
    pub cidr: IpNet,
    pub line: String,
    #[serde(default)]
    pub region: Option<String>,
}

impl Validate for LinePrefix {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.cidr.trunc() != self.cidr {
            return Err(ValidationError::new(
                "cidr",
                format!(
                    "`{}` has host bits set; did you mean `{}`?",
                    self.cidr,
                    self.cidr.trunc()
                ),
            ));
        }
        check_id("line", &self.line)?;
        if let Some(r) = &self.region {
            check_id("region", r)?;
        }
        Ok(())
    }
}

/// Parses the `CIDR line [region]` format: one prefix per line, fields separated by
/// whitespace, `#` starts a comment, blank lines are ignored. Errors name the line number.
pub fn parse_line_table(text: &str) -> Result<Vec<LinePrefix>, ValidationError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let field = format!("line {lineno}");
        let mut parts = content.split_whitespace();
        let (Some(cidr), Some(line)) = (parts.next(), parts.next()) else {
            return Err(ValidationError::new(
                field,
                format!("expected `CIDR line [region]`, got `{content}`"),
            ));
        };
        let region = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return Err(ValidationError::new(
                field,
                format!("too many fields in `{content}`: expected `CIDR line [region]`"),
            ));
        }
        let cidr: IpNet = cidr.parse().map_err(|_| {
            ValidationError::new(field.clone(), format!("`{cidr}` is not a CIDR prefix"))
        })?;
        let prefix = LinePrefix {
            cidr,
            line: line.to_owned(),
            region,
        };
        prefix
            .validate()
            .map_err(|e| ValidationError::new(field, e.to_string()))?;
        out.push(prefix);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_operator_format() {
        let text =
            "# carrier list\n198.51.100.0/24 telecom cn-js-wuxi\n\n2001:db8::/32 unicom # v6\n";
        let got = parse_line_table(text).expect("valid table");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].line, "telecom");
        assert_eq!(got[0].region.as_deref(), Some("cn-js-wuxi"));
        assert_eq!(got[1].region, None);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_line_table("1.2.3.0/24 telecom\nnot-a-cidr telecom\n")
            .expect_err("must be refused");
        assert_eq!(err.field, "line 2");
        let err = parse_line_table("1.2.3.4/24 telecom\n").expect_err("must be refused");
        assert!(err.message.contains("1.2.3.0/24"), "{err}");
        let err = parse_line_table("1.2.3.0/24\n").expect_err("must be refused");
        assert!(err.message.contains("expected"), "{err}");
    }
}
