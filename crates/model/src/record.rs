//! Static DNS records: the operator's own names under the platform zone (`api`, `www`,
//! `_acme-challenge`, mail exchangers, ...), served by the GSLB DNS beside the steered
//! service names. One record set = one owner name and type with one or more values.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError};

/// The owner name of the zone's apex.
pub const APEX: &str = "@";
/// Names the DNS server owns itself (the zone's name server).
pub const RESERVED_NAMES: &[&str] = &["ns1"];
/// Most values in one record set.
pub const MAX_VALUES: usize = 32;
/// Longest TXT value (split into 255-byte character strings on the wire).
pub const MAX_TXT_BYTES: usize = 2048;
/// Most bytes of all values of a set together, so that it fits one DNS message.
pub const MAX_SET_BYTES: usize = 16_384;

/// The record types an operator may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Mx => "MX",
        }
    }
}

/// A record set under the platform zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Slug, e.g. `api-a`.
    pub id: String,
    /// Owner name relative to the zone: `@` for the apex, `api`, `_acme-challenge.www`.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// Seconds resolvers may cache it.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// A: IPv4 addresses; AAAA: IPv6 addresses; CNAME: one target name; TXT: texts;
    /// MX: `PREFERENCE EXCHANGE`. A target ending in `.` is absolute, otherwise it is
    /// relative to the zone.
    pub values: Vec<String>,
}

fn default_ttl() -> u32 {
    300
}

/// One value of a record set, parsed. Names are lowercase and absolute (trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Txt(String),
    Mx(u16, String),
}

impl DnsRecord {
    /// The owner name's labels, lowercase, relative to the zone (empty at the apex).
    pub fn owner_labels(&self) -> Vec<String> {
        owner_labels(&self.name)
    }

    /// The values parsed, names made absolute under `zone` (e.g. `cdn.lingjing.test.`).
    pub fn parse_values(&self, zone: &str) -> Result<Vec<RecordValue>, ValidationError> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_value(self.rtype, v, zone)
                    .map_err(|m| ValidationError::new(format!("values[{i}]"), m))
            })
            .collect()
    }
}

/// The labels of a relative owner name, lowercase (`@`: none).
pub fn owner_labels(name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.');
    if name == APEX || name.is_empty() {
        return Vec::new();
    }
    name.split('.').map(str::to_ascii_lowercase).collect()
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 63 {
        return Err(format!("label `{label}` must be 1 to 63 characters"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "label `{label}` may hold only letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// A target name made absolute and lowercase.
fn target_name(value: &str, zone: &str) -> Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    let (relative, absolute) = match v.strip_suffix('.') {
        Some(abs) => (abs.to_owned(), true),
        None => (v.clone(), false),
    };
    if relative.is_empty() {
        return Err("is not a domain name".into());
    }
    for label in relative.split('.') {
        check_label(label)?;
    }
    let full = if absolute {
        format!("{relative}.")
    } else {
        format!("{relative}.{}", zone.trim_start_matches('.'))
    };
    if full.len() > 254 {
        return Err("makes a name longer than 253 characters".into());
    }
    Ok(full)
}

/// Parses one value of a record set of type `rtype` in `zone`.
pub fn parse_value(rtype: RecordType, value: &str, zone: &str) -> Result<RecordValue, String> {
    match rtype {
        RecordType::A => value
            .trim()
            .parse()
            .map(RecordValue::A)
            .map_err(|_| format!("`{value}` is not an IPv4 address")),
        RecordType::Aaaa => value
            .trim()
            .parse()
            .map(RecordValue::Aaaa)
            .map_err(|_| format!("`{value}` is not an IPv6 address")),
        RecordType::Cname => target_name(value, zone).map(RecordValue::Cname),
        RecordType::Txt => {
            if value.len() > MAX_TXT_BYTES {
                return Err(format!("must be at most {MAX_TXT_BYTES} bytes"));
            }
            if value.chars().any(char::is_control) {
                return Err("must not contain control characters".into());
            }
            Ok(RecordValue::Txt(value.to_owned()))
        }
        RecordType::Mx => {
            let mut parts = value.split_whitespace();
            let (Some(pref), Some(host), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!(
                    "`{value}` is not `PREFERENCE EXCHANGE`, e.g. `10 mail.example.com.`"
                ));
            };
            let pref = pref
                .parse()
                .map_err(|_| format!("preference `{pref}` is not a number 0..65535"))?;
            Ok(RecordValue::Mx(pref, target_name(host, zone)?))
        }
    }
}

impl Validate for DnsRecord {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        let labels = self.owner_labels();
        let name = self.name.as_str();
        if name.len() > 1 && name.ends_with('.') {
            return Err(ValidationError::new(
                "name",
                format!(
                    "give the name relative to the zone, without the final dot (e.g. `{}`)",
                    name.split('.').next().unwrap_or("api")
                ),
            ));
        }
        if name != APEX {
            if name.is_empty() {
                return Err(ValidationError::new(
                    "name",
                    "must not be empty; use `@` for the zone's apex",
                ));
            }
            if name.len() > 200 {
                return Err(ValidationError::new(
                    "name",
                    "must be at most 200 characters",
                ));
            }
            for l in &labels {
                check_label(l).map_err(|m| ValidationError::new("name", m))?;
            }
        }
        if labels.len() == 1 && RESERVED_NAMES.contains(&labels[0].as_str()) {
            return Err(ValidationError::new(
                "name",
                format!(
                    "`{}` is the zone's name server, served by the DNS itself",
                    labels[0]
                ),
            ));
        }
        if labels.is_empty() && self.rtype == RecordType::Cname {
            return Err(ValidationError::new(
                "type",
                "a CNAME cannot sit at the zone's apex (it holds the SOA and NS)",
            ));
        }
        if self.ttl == 0 || self.ttl > 604_800 {
            return Err(ValidationError::new("ttl", "must be 1..=604800 seconds"));
        }
        if self.values.iter().map(String::len).sum::<usize>() > MAX_SET_BYTES {
            return Err(ValidationError::new(
                "values",
                format!("must hold at most {MAX_SET_BYTES} bytes in all (one answer over TCP)"),
            ));
        }
        if self.values.is_empty() || self.values.len() > MAX_VALUES {
            return Err(ValidationError::new(
                "values",
                format!("must hold 1 to {MAX_VALUES} values"),
            ));
        }
        if self.rtype == RecordType::Cname && self.values.len() != 1 {
            return Err(ValidationError::new(
                "values",
                "a CNAME has exactly one target",
            ));
        }
        self.parse_values("zone.invalid.")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, rtype: RecordType, values: &[&str]) -> DnsRecord {
        DnsRecord {
            id: "r1".into(),
            name: name.into(),
            rtype,
            ttl: 300,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn accepts_the_usual_records() {
        for r in [
            rec("api", RecordType::A, &["192.0.2.10", "192.0.2.11"]),
            rec("api", RecordType::Aaaa, &["2001:db8::10"]),
            rec("www", RecordType::Cname, &["demo"]),
            rec("_acme-challenge.www", RecordType::Txt, &["token value"]),
            rec("@", RecordType::Mx, &["10 mail.example.com."]),
            rec("@", RecordType::Txt, &["v=spf1 -all"]),
        ] {
            r.validate().unwrap();
        }
    }

    #[test]
    fn refuses_bad_records_naming_the_field() {
        let cases = [
            (rec("api", RecordType::A, &["2001:db8::1"]), "values[0]"),
            (rec("api", RecordType::A, &[]), "values"),
            (rec("ns1", RecordType::A, &["192.0.2.1"]), "name"),
            (rec("@", RecordType::Cname, &["x."]), "type"),
            (rec("www", RecordType::Cname, &["a.", "b."]), "values"),
            (rec("bad name", RecordType::A, &["192.0.2.1"]), "name"),
            (rec("", RecordType::A, &["192.0.2.1"]), "name"),
            (
                rec("api.cdn.lingjing.test.", RecordType::A, &["192.0.2.1"]),
                "name",
            ),
            (
                rec("@", RecordType::Mx, &["mail.example.com."]),
                "values[0]",
            ),
        ];
        for (r, field) in cases {
            assert_eq!(r.validate().unwrap_err().field, field, "{r:?}");
        }
        let mut r = rec("api", RecordType::A, &["192.0.2.1"]);
        r.ttl = 0;
        assert_eq!(r.validate().unwrap_err().field, "ttl");
    }

    #[test]
    fn names_become_absolute_under_the_zone() {
        let r = rec("www", RecordType::Cname, &["Demo"]);
        assert_eq!(
            r.parse_values("cdn.lingjing.test.").unwrap(),
            vec![RecordValue::Cname("demo.cdn.lingjing.test.".into())]
        );
        let r = rec("@", RecordType::Mx, &["10 mail.example.com."]);
        assert_eq!(
            r.parse_values("cdn.lingjing.test.").unwrap(),
            vec![RecordValue::Mx(10, "mail.example.com.".into())]
        );
        assert_eq!(owner_labels("_acme.WWW"), vec!["_acme", "www"]);
        assert!(owner_labels("@").is_empty());
    }
}
