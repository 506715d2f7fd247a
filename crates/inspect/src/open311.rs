//! Open311 GeoReport v2 (<https://wiki.open311.org/GeoReport_v2/>): the service list (one
//! service per defect class), service requests (work orders as the public sees them) and
//! errors, in the spec's JSON and XML; parsing the form of `POST requests`.
//!
//! JSON writes every field, `null` when absent, as the spec's examples do; XML writes an
//! empty element for it. All XML text is escaped (`& < > " '`) and stripped of characters
//! XML 1.0 cannot carry (control characters other than tab, newline and carriage return).

use serde::Serialize;
use serde_json::{Value, json};

use crate::classes::{CLASSES, class_info};

/// One service of `GET services` (here: a defect class).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub service_code: String,
    pub service_name: String,
    pub description: String,
    pub metadata: bool,
    /// `realtime`: a request gets its id at once.
    #[serde(rename = "type")]
    pub kind: String,
    /// Comma-separated.
    pub keywords: String,
    pub group: String,
}

/// The fields of a service, in the spec's order.
pub const SERVICE_FIELDS: &[&str] = &[
    "service_code",
    "service_name",
    "description",
    "metadata",
    "type",
    "keywords",
    "group",
];

/// One service request of `GET requests` (here: a work order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRequest {
    pub service_request_id: String,
    /// `open` or `closed`.
    pub status: String,
    pub status_notes: Option<String>,
    pub service_name: String,
    pub service_code: String,
    pub description: Option<String>,
    pub agency_responsible: Option<String>,
    pub service_notice: Option<String>,
    /// See [`format_time_ms`].
    pub requested_datetime: String,
    pub updated_datetime: String,
    pub expected_datetime: Option<String>,
    pub address: Option<String>,
    pub address_id: Option<String>,
    pub zipcode: Option<String>,
    pub lat: f64,
    pub long: f64,
    pub media_url: Option<String>,
}

/// The fields of a service request, in the spec's order.
pub const REQUEST_FIELDS: &[&str] = &[
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
];

/// The service list: one realtime service per defect class, in the `road` group.
pub fn services() -> Vec<Service> {
    CLASSES
        .iter()
        .map(|c| {
            let kind = c.name.to_ascii_lowercase();
            let keywords = if kind.contains("crack") {
                format!("road,crack,{kind}")
            } else {
                format!("road,{kind}")
            };
            Service {
                service_code: c.code.to_string(),
                service_name: c.name.to_string(),
                description: format!(
                    "{} in the road surface (road damage class {}); fixed within {} days",
                    c.name, c.code, c.due_days
                ),
                metadata: false,
                kind: "realtime".to_string(),
                keywords,
                group: "road".to_string(),
            }
        })
        .collect()
}

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// `text` safe inside an XML element or attribute.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{FFFE}' | '\u{FFFF}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `<name>text</name>` (empty for none).
fn element(out: &mut String, name: &str, text: Option<&str>) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    if let Some(t) = text {
        out.push_str(&xml_escape(t));
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The service list in XML.
pub fn services_xml(items: &[Service]) -> String {
    let mut out = format!("{XML_DECLARATION}<services>");
    for s in items {
        out.push_str("<service>");
        element(&mut out, "service_code", Some(&s.service_code));
        element(&mut out, "service_name", Some(&s.service_name));
        element(&mut out, "description", Some(&s.description));
        element(
            &mut out,
            "metadata",
            Some(if s.metadata { "true" } else { "false" }),
        );
        element(&mut out, "type", Some(&s.kind));
        element(&mut out, "keywords", Some(&s.keywords));
        element(&mut out, "group", Some(&s.group));
        out.push_str("</service>");
    }
    out.push_str("</services>");
    out
}

/// Service requests in XML.
pub fn requests_xml(items: &[ServiceRequest]) -> String {
    let mut out = format!("{XML_DECLARATION}<service_requests>");
    for r in items {
        let (lat, long) = (r.lat.to_string(), r.long.to_string());
        out.push_str("<request>");
        element(&mut out, "service_request_id", Some(&r.service_request_id));
        element(&mut out, "status", Some(&r.status));
        element(&mut out, "status_notes", r.status_notes.as_deref());
        element(&mut out, "service_name", Some(&r.service_name));
        element(&mut out, "service_code", Some(&r.service_code));
        element(&mut out, "description", r.description.as_deref());
        element(
            &mut out,
            "agency_responsible",
            r.agency_responsible.as_deref(),
        );
        element(&mut out, "service_notice", r.service_notice.as_deref());
        element(&mut out, "requested_datetime", Some(&r.requested_datetime));
        element(&mut out, "updated_datetime", Some(&r.updated_datetime));
        element(
            &mut out,
            "expected_datetime",
            r.expected_datetime.as_deref(),
        );
        element(&mut out, "address", r.address.as_deref());
        element(&mut out, "address_id", r.address_id.as_deref());
        element(&mut out, "zipcode", r.zipcode.as_deref());
        element(&mut out, "lat", Some(&lat));
        element(&mut out, "long", Some(&long));
        element(&mut out, "media_url", r.media_url.as_deref());
        out.push_str("</request>");
    }
    out.push_str("</service_requests>");
    out
}

/// The answer to `POST requests` in JSON.
pub fn created_json(id: &str, notice: Option<&str>) -> Value {
    json!([{ "service_request_id": id, "service_notice": notice, "account_id": null }])
}

/// The answer to `POST requests` in XML.
pub fn created_xml(id: &str, notice: Option<&str>) -> String {
    let mut out = format!("{XML_DECLARATION}<service_requests><request>");
    element(&mut out, "service_request_id", Some(id));
    element(&mut out, "service_notice", notice);
    element(&mut out, "account_id", None);
    out.push_str("</request></service_requests>");
    out
}

/// Errors in JSON: `[{"code": 400, "description": "..."}]`.
pub fn errors_json(errors: &[(u16, String)]) -> Value {
    Value::Array(
        errors
            .iter()
            .map(|(code, description)| json!({ "code": code, "description": description }))
            .collect(),
    )
}

/// Errors in XML: `<errors><error><code>400</code><description>..`.
pub fn errors_xml(errors: &[(u16, String)]) -> String {
    let mut out = format!("{XML_DECLARATION}<errors>");
    for (code, description) in errors {
        out.push_str("<error>");
        element(&mut out, "code", Some(&code.to_string()));
        element(&mut out, "description", Some(description));
        out.push_str("</error>");
    }
    out.push_str("</errors>");
    out
}

/// A report from the public (`POST requests`), checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    /// A known class's code, as [`CLASSES`] spells it.
    pub service_code: String,
    pub lat: f64,
    pub long: f64,
    pub description: Option<String>,
    pub media_url: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub address_string: Option<String>,
    pub device_id: Option<String>,
    pub account_id: Option<String>,
}

/// Longest value of any form field, in characters (the spec's limit for `description`).
pub const MAX_FIELD_CHARS: usize = 4000;
/// Longest `media_url`, in characters.
pub const MAX_MEDIA_URL_CHARS: usize = 2000;

/// The form fields of `POST requests` this server reads (`api_key`, `jurisdiction_id`,
/// `attribute[...]` and anything else are ignored here).
const FORM_FIELDS: &[&str] = &[
    "service_code",
    "lat",
    "long",
    "address_string",
    "address_id",
    "email",
    "device_id",
    "account_id",
    "first_name",
    "last_name",
    "phone",
    "description",
    "media_url",
];

fn bad(message: String) -> (u16, String) {
    (400, message)
}

/// Reads and checks the form of `POST requests`. An error is `(400, description)`, the
/// description naming the field and what to send instead.
pub fn parse_new_request(pairs: &[(String, String)]) -> Result<NewRequest, (u16, String)> {
    let mut values: Vec<Option<&str>> = vec![None; FORM_FIELDS.len()];
    for (key, value) in pairs {
        let Some(i) = FORM_FIELDS.iter().position(|f| f == key) else {
            continue;
        };
        let n = value.chars().count();
        if n > MAX_FIELD_CHARS {
            return Err(bad(format!(
                "{key} is {n} characters: send at most {MAX_FIELD_CHARS}"
            )));
        }
        if values[i].is_some() {
            return Err(bad(format!("{key} is given more than once: send it once")));
        }
        values[i] = Some(value.as_str());
    }
    // An empty field (a form's blank input) is an absent one.
    let get = |name: &str| {
        FORM_FIELDS
            .iter()
            .position(|f| *f == name)
            .and_then(|i| values[i])
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let owned = |name: &str| get(name).map(str::to_string);

    let codes: Vec<&str> = CLASSES.iter().map(|c| c.code).collect();
    let service_code = match get("service_code") {
        None => {
            return Err(bad(format!(
                "service_code is required: send one of {} (GET services lists them)",
                codes.join(", ")
            )));
        }
        Some(code) => match class_info(code) {
            Some(c) => c.code.to_string(),
            None => {
                return Err(bad(format!(
                    "service_code `{}` is not a service here: send one of {} (GET services lists them)",
                    code.escape_debug(),
                    codes.join(", ")
                )));
            }
        },
    };

    let (lat, long) = match (get("lat"), get("long")) {
        (None, None) => {
            let hint = if get("address_string").is_some() || get("address_id").is_some() {
                "an address alone cannot be placed here: "
            } else {
                ""
            };
            return Err(bad(format!(
                "lat and long are required: {hint}this server needs the position, so send lat and long in degrees (WGS 84)"
            )));
        }
        (Some(_), None) => {
            return Err(bad(
                "long is required with lat: send both, in degrees (WGS 84)".to_string(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "lat is required with long: send both, in degrees (WGS 84)".to_string(),
            ));
        }
        (Some(lat), Some(long)) => (
            parse_degrees("lat", lat, 90.0)?,
            parse_degrees("long", long, 180.0)?,
        ),
    };

    let media_url = owned("media_url");
    if let Some(url) = &media_url {
        check_media_url(url)?;
    }

    Ok(NewRequest {
        service_code,
        lat,
        long,
        description: owned("description"),
        media_url,
        email: owned("email"),
        first_name: owned("first_name"),
        last_name: owned("last_name"),
        phone: owned("phone"),
        address_string: owned("address_string"),
        device_id: owned("device_id"),
        account_id: owned("account_id"),
    })
}

fn parse_degrees(field: &str, text: &str, limit: f64) -> Result<f64, (u16, String)> {
    let value = text.parse::<f64>().ok().filter(|v| v.is_finite());
    match value {
        Some(v) if (-limit..=limit).contains(&v) => Ok(v),
        _ => Err(bad(format!(
            "{field} `{}` is not a number from -{limit} to {limit}: send degrees (WGS 84), e.g. {}",
            text.chars().take(40).collect::<String>().escape_debug(),
            if field == "lat" {
                "31.4912"
            } else {
                "120.3119"
            }
        ))),
    }
}

fn check_media_url(url: &str) -> Result<(), (u16, String)> {
    let n = url.chars().count();
    if n > MAX_MEDIA_URL_CHARS {
        return Err(bad(format!(
            "media_url is {n} characters: send at most {MAX_MEDIA_URL_CHARS}"
        )));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let scheme_ok = lower.starts_with("http://") || lower.starts_with("https://");
    let host_ok = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty());
    if !scheme_ok || !host_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "media_url must be an http:// or https:// URL without spaces: send a link to the photo"
                .to_string(),
        ));
    }
    Ok(())
}

/// A time (ms since the epoch) as the spec writes it: ISO 8601 with an offset, in UTC,
/// e.g. `2026-12-04T09:46:10+00:00`.
pub fn format_time_ms(ms: i64) -> String {
    const DAY_MS: i64 = 86_400_000;
    let days = ms.div_euclid(DAY_MS);
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    let (y, m, d) = lingjing_model::units::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request() -> ServiceRequest {
        ServiceRequest {
            service_request_id: "wo-17".into(),
            status: "open".into(),
            status_notes: None,
            service_name: "Pothole".into(),
            service_code: "D40".into(),
            description: Some("Deep <hole> & \"danger\" \u{7}".into()),
            agency_responsible: Some("East crew".into()),
            service_notice: None,
            requested_datetime: format_time_ms(0),
            updated_datetime: format_time_ms(1000),
            expected_datetime: None,
            address: None,
            address_id: None,
            zipcode: None,
            lat: 31.4912,
            long: 120.3119,
            media_url: None,
        }
    }

    /// The element names directly inside each `<record>` of an XML text, in order.
    fn xml_children(xml: &str, record: &str) -> Vec<String> {
        let open = format!("<{record}>");
        let close = format!("</{record}>");
        let start = xml.find(&open).unwrap() + open.len();
        let end = xml.find(&close).unwrap();
        let mut inner = &xml[start..end];
        let mut names = Vec::new();
        while let Some(lt) = inner.find('<') {
            let gt = inner[lt..].find('>').unwrap() + lt;
            let name = inner[lt + 1..gt].to_string();
            let end_tag = format!("</{name}>");
            let after = inner.find(&end_tag).unwrap() + end_tag.len();
            names.push(name);
            inner = &inner[after..];
        }
        names
    }

    #[test]
    fn xml_text_is_escaped_and_stripped() {
        assert_eq!(
            xml_escape("a & b < c > d \" e ' f"),
            "a &amp; b &lt; c &gt; d &quot; e &apos; f"
        );
        assert_eq!(xml_escape("x\u{0}\u{1b}y\u{7f}\u{fffe}"), "xy");
        assert_eq!(xml_escape("line\none\ttab"), "line\none\ttab");
        let xml = requests_xml(&[request()]);
        assert!(
            xml.contains("<description>Deep &lt;hole&gt; &amp; &quot;danger&quot; </description>")
        );
        assert!(!xml.contains('\u{7}'));
    }

    #[test]
    fn services_follow_the_spec() {
        let list = services();
        assert_eq!(list.len(), CLASSES.len());
        assert_eq!(list[3].service_code, "D40");
        assert_eq!(list[3].keywords, "road,pothole");
        assert!(
            list.iter()
                .all(|s| s.group == "road" && s.kind == "realtime" && !s.metadata)
        );
        let json = serde_json::to_value(&list).unwrap();
        let mut keys: Vec<&str> = json[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want: Vec<&str> = SERVICE_FIELDS.to_vec();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        let xml = services_xml(&list);
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="utf-8"?><services><service>"#));
        assert_eq!(xml_children(&xml, "service"), SERVICE_FIELDS);
        assert!(xml.contains("<metadata>false</metadata><type>realtime</type>"));
    }

    #[test]
    fn requests_follow_the_spec_in_order() {
        let r = request();
        let text = serde_json::to_string(&r).unwrap();
        let mut at = 0;
        for f in REQUEST_FIELDS {
            let pos = text.find(&format!("\"{f}\":")).unwrap();
            assert!(pos >= at, "{f} out of order in {text}");
            at = pos;
        }
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json.as_object().unwrap().len(), REQUEST_FIELDS.len());
        assert_eq!(json["status_notes"], Value::Null);
        assert_eq!(json["long"], 120.3119);
        let xml = requests_xml(&[r.clone(), r]);
        assert_eq!(xml_children(&xml, "request"), REQUEST_FIELDS);
        assert!(xml.contains("<status_notes></status_notes>"));
        assert!(xml.contains("<lat>31.4912</lat><long>120.3119</long>"));
        assert_eq!(xml.matches("<request>").count(), 2);
        assert!(requests_xml(&[]).ends_with("<service_requests></service_requests>"));
    }

    #[test]
    fn created_and_errors_have_the_spec_shapes() {
        let j = created_json("wo-1", Some("We fix potholes within 3 days"));
        assert_eq!(
            j,
            json!([{"service_request_id": "wo-1", "service_notice": "We fix potholes within 3 days", "account_id": null}])
        );
        assert_eq!(created_json("wo-1", None)[0]["service_notice"], Value::Null);
        assert_eq!(
            created_xml("wo-1", None),
            r#"<?xml version="1.0" encoding="utf-8"?><service_requests><request><service_request_id>wo-1</service_request_id><service_notice></service_notice><account_id></account_id></request></service_requests>"#
        );
        let errors = [(400, "lat <is> missing".to_string())];
        assert_eq!(
            errors_json(&errors),
            json!([{"code": 400, "description": "lat <is> missing"}])
        );
        assert_eq!(
            errors_xml(&errors),
            r#"<?xml version="1.0" encoding="utf-8"?><errors><error><code>400</code><description>lat &lt;is&gt; missing</description></error></errors>"#
        );
    }

    #[test]
    fn a_good_form_is_read() {
        let r = parse_new_request(&form(&[
            ("api_key", "ignored"),
            ("jurisdiction_id", "city"),
            ("service_code", "d40"),
            ("lat", " 31.4912 "),
            ("long", "120.3119"),
            ("description", "Deep pothole by the school"),
            ("media_url", "https://example.org/p.jpg"),
            ("email", "a@example.org"),
            ("phone", ""),
            ("attribute[size]", "big"),
        ]))
        .unwrap();
        assert_eq!(r.service_code, "D40");
        assert_eq!((r.lat, r.long), (31.4912, 120.3119));
        assert_eq!(r.description.as_deref(), Some("Deep pothole by the school"));
        assert_eq!(r.email.as_deref(), Some("a@example.org"));
        assert_eq!(r.phone, None);
        assert_eq!(r.account_id, None);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err = |pairs: &[(&str, &str)]| parse_new_request(&form(pairs)).unwrap_err();
        let pos = [("lat", "31.5"), ("long", "120.3")];
        fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
            let mut v = vec![("service_code", "D40"), ("lat", "31.5"), ("long", "120.3")];
            v.extend_from_slice(extra);
            v
        }

        let (code, msg) = err(&pos);
        assert_eq!(code, 400);
        assert!(
            msg.starts_with("service_code is required") && msg.contains("D00, D10, D20, D40"),
            "{msg}"
        );
        let (_, msg) = err(&[("service_code", "graffiti"), ("lat", "1"), ("long", "1")]);
        assert!(
            msg.contains("service_code `graffiti` is not a service"),
            "{msg}"
        );
        let (_, msg) = err(&[("service_code", "D40"), ("address_string", "8th Ave")]);
        assert!(
            msg.starts_with("lat and long are required") && msg.contains("address alone"),
            "{msg}"
        );
        let (_, msg) = err(&[("service_code", "D40"), ("lat", "31")]);
        assert!(msg.starts_with("long is required"), "{msg}");
        let (_, msg) = err(&[("service_code", "D40"), ("lat", "91"), ("long", "120")]);
        assert!(msg.starts_with("lat `91`"), "{msg}");
        let (_, msg) = err(&[("service_code", "D40"), ("lat", "NaN"), ("long", "120")]);
        assert!(msg.starts_with("lat `NaN`"), "{msg}");
        let (_, msg) = err(&[("service_code", "D40"), ("lat", "31"), ("long", "inf")]);
        assert!(msg.starts_with("long `inf`"), "{msg}");
        let long_text = "x".repeat(4001);
        let (_, msg) = err(&with(&[("description", long_text.as_str())]));
        assert!(msg.starts_with("description is 4001 characters"), "{msg}");
        let (_, msg) = err(&with(&[("media_url", "javascript:alert(1)")]));
        assert!(msg.starts_with("media_url must be"), "{msg}");
        let (_, msg) = err(&with(&[("media_url", "https://")]));
        assert!(msg.starts_with("media_url must be"), "{msg}");
        let long_url = format!("https://example.org/{}", "a".repeat(2000));
        let (_, msg) = err(&with(&[("media_url", long_url.as_str())]));
        assert!(msg.starts_with("media_url is 2020 characters"), "{msg}");
        let (_, msg) = err(&with(&[("lat", "30")]));
        assert!(msg.starts_with("lat is given more than once"), "{msg}");
        // Multi-byte text is measured in characters, and cut without panicking.
        let (_, msg) = err(&[
            ("service_code", "D40"),
            ("lat", &"é".repeat(100)),
            ("long", "1"),
        ]);
        assert!(msg.starts_with("lat `éé"), "{msg}");
        assert!(
            err(&with(&[("media_url", "é")]))
                .1
                .starts_with("media_url must be")
        );
    }

    #[test]
    fn times_are_written_as_the_spec_shows() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00+00:00");
        // 2026-12-04T09:46:10Z.
        assert_eq!(
            format_time_ms(1_796_377_570_000),
            "2026-12-04T09:46:10+00:00"
        );
        assert_eq!(format_time_ms(-1), "1969-12-31T23:59:59+00:00");
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29T00:00:00+00:00");
        // Extremes do not panic.
        assert!(!format_time_ms(i64::MIN).is_empty());
        assert!(!format_time_ms(i64::MAX).is_empty());
    }
}
