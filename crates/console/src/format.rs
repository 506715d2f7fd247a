//! How values read on a page: times (UTC in the HTML, the viewer's zone once the script
//! runs, UTC on hover), byte counts and rates.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time as a page shows it: `<time datetime="{iso}" title="{utc}">{utc}</time>`;
/// `console.js` rewrites the text in the viewer's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// RFC 3339, as the API gave it (empty when unknown).
    pub iso: String,
    /// `2026-12-03 21:04:05 UTC` (or what the API gave, when it does not parse).
    pub utc: String,
}

impl When {
    /// `rfc3339` as a page shows it; `None` reads "never".
    pub fn of(rfc3339: Option<&str>) -> When {
        let Some(s) = rfc3339 else {
            return When {
                iso: String::new(),
                utc: "never".into(),
            };
        };
        let utc = match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => {
                let t = t.to_offset(time::UtcOffset::UTC);
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            }
            Err(_) => s.to_owned(),
        };
        When {
            iso: s.to_owned(),
            utc,
        }
    }
}

impl When {
    /// A time in milliseconds since the Unix epoch.
    pub fn of_ms(ms: i64) -> When {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok());
        When::of(t.as_deref())
    }
}

/// A unit-like enum's name as the API spells it (`cdn`, `block`, `enforce`).
pub fn word(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub use lingjing_model::units::human_bytes as bytes;

/// `n` with thousands separated: `17,999,857`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `part` of `whole` as a percentage with one decimal, `-` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_utc_until_the_script_runs() {
        let w = When::of(Some("2026-12-03T21:04:05+08:00"));
        assert_eq!(w.utc, "2026-12-03 13:04:05 UTC");
        assert_eq!(w.iso, "2026-12-03T21:04:05+08:00");
        assert_eq!(When::of(None).utc, "never");
        assert_eq!(When::of(Some("garbage")).utc, "garbage");
    }

    #[test]
    fn sizes_and_shares() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(count(17_999_857), "17,999,857");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(percent(1, 0), "-");
    }
}
