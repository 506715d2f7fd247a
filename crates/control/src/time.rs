//! Wall-clock timestamps as the API shows them (RFC 3339, UTC) and as the store compares
//! them (milliseconds since the Unix epoch).

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// RFC 3339 in UTC with exactly three fractional digits: fixed width, so that the store
/// can order and compare timestamps as strings (`Rfc3339` drops trailing zeros, which
/// makes `...:05Z` sort after `...:05.5Z`).
const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Now, as RFC 3339 in UTC with millisecond precision, e.g. `2025-01-02T03:04:05.060Z`.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.format(FORMAT)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339_from_ms(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => t.format(FORMAT).unwrap_or_else(|_| ms.to_string()),
        Err(_) => ms.to_string(),
    }
}

/// Parses RFC 3339 into milliseconds since the Unix epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}
