//! Printing API answers: tables for people (one column set per resource kind), JSON with
//! `--json` for scripts.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use serde_json::Value;

/// The columns shown by `list` for a kind: (header, JSON pointer).
pub fn columns(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "regions" => &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("LEVEL", "/level"),
            ("TIER", "/tier"),
            ("PARENT", "/parent"),
        ],
        "lines" => &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("PREFIXES", "/prefix_count"),
        ],
        "sites" => &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("REGION", "/region"),
            ("LINES", "/lines"),
            ("PARENT", "/parent"),
            ("MBPS", "/bandwidth_mbps"),
        ],
        "nodes" => &[
            ("ID", "/id"),
            ("SITE", "/site"),
            ("ROLES", "/roles"),
            ("ADDRESSES", "/addresses"),
            ("DRAINED", "/drained"),
            ("HEALTHY", "/status/healthy"),
            ("SINCE", "/status/health_since"),
            ("LAST HEARTBEAT", "/status/last_heartbeat"),
            ("LOAD %", "/status/load_percent"),
            ("APPLIED", "/status/applied"),
        ],
        "pools" => &[
            ("ID", "/id"),
            ("SITE", "/site"),
            ("LINE", "/line"),
            ("CIDR", "/cidr"),
            ("USED", "/allocated"),
            ("CAPACITY", "/capacity"),
        ],
        "tenants" => &[("ID", "/id"), ("NAME", "/name"), ("CONTACT", "/contact")],
        "services" => &[
            ("ID", "/id"),
            ("TENANT", "/tenant"),
            ("HOSTNAMES", "/hostnames"),
            ("CNAME", "/cname"),
            ("ORIGINS", "/origins"),
        ],
        "dns-records" => &[
            ("ID", "/id"),
            ("NAME", "/fqdn"),
            ("TYPE", "/type"),
            ("TTL", "/ttl"),
            ("VALUES", "/values"),
        ],
        "sensors" => &[
            ("ID", "/id"),
            ("SITE", "/site"),
            ("ROOM", "/room"),
            ("CABINET", "/cabinet"),
            ("KIND", "/kind"),
            ("DEVICE", "/device"),
            ("INTERVAL S", "/interval_s"),
        ],
        "receivers" => &[
            ("ID", "/id"),
            ("URL", "/url"),
            ("EMAIL TO", "/email/to"),
            ("SITES", "/sites"),
            ("TENANTS", "/tenants"),
            ("MIN SEVERITY", "/min_severity"),
        ],
        "silences" => &[
            ("ID", "/id"),
            ("MATCHERS", "/matchers"),
            ("STARTS MS", "/starts_ms"),
            ("ENDS MS", "/ends_ms"),
            ("BY", "/by"),
            ("COMMENT", "/comment"),
        ],
        "allocations" => &[
            ("ADDRESS", "/address"),
            ("NODE", "/node"),
            ("ALLOCATED AT", "/allocated_at"),
        ],
        "keys" => &[
            ("ID", "/id"),
            ("TENANT", "/tenant"),
            ("CREATED AT", "/created_at"),
        ],
        "purges" => &[
            ("ID", "/id"),
            ("SERVICE", "/service"),
            ("KIND", "/kind"),
            ("MODE", "/mode"),
            ("TARGETS", "/targets"),
            ("VERSION", "/version"),
            ("CREATED AT", "/created_at"),
        ],
        "sla" => &[
            ("KIND", "/kind"),
            ("ID", "/id"),
            ("AVAILABILITY %", "/availability"),
            ("SHORTFALL", "/shortfall"),
            ("DOWNTIME MIN", "/downtime_minutes"),
            ("MET", "/meets_target"),
        ],
        "prefixes" => &[("CIDR", "/cidr"), ("LINE", "/line"), ("REGION", "/region")],
        "defence-rules" => &[
            ("ID", "/id"),
            ("SERVICE", "/service"),
            ("ACTION", "/action"),
            ("MODE", "/mode"),
            ("MATCH", "/match"),
            ("RATE", "/rate"),
            ("ORIGIN", "/origin"),
            ("EXPIRES (ms)", "/expires_ms"),
        ],
        "cabinets" => &[
            ("ID", "/id"),
            ("SITE", "/site"),
            ("ROOM", "/room"),
            ("UNITS", "/rack_units"),
            ("CONTRACT W", "/contracted_watts"),
            ("MEASURED W", "/measured_watts"),
            ("STATUS", "/status"),
            ("WARNINGS", "/warnings"),
        ],
        "costs" => &[
            ("ID", "/id"),
            ("SITE", "/site"),
            ("SEGMENT", "/segment"),
            ("DESCRIPTION", "/description"),
            ("KIND", "/basis/kind"),
            ("MONTHLY", "/basis/monthly"),
            ("PER MBPS", "/basis/price_per_mbps"),
        ],
        "incidents" => &[
            ("ID", "/id"),
            ("SITE", "/site"),
            ("START", "/start"),
            ("END", "/end"),
            ("WHAT", "/what"),
        ],
        "plans" => &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("CURRENCY", "/currency"),
            ("TAX", "/tax_rate"),
            ("CDN", "/cdn/kind"),
            ("SLA %", "/sla/target_percent"),
        ],
        "invoices" => &[
            ("NUMBER", "/invoice/number"),
            ("KIND", "/kind"),
            ("TENANT", "/invoice/tenant"),
            ("MONTH", "/invoice/month"),
            ("CURRENCY", "/invoice/currency"),
            ("TOTAL", "/invoice/total"),
            ("ISSUED", "/issued"),
            ("REFERS TO", "/refers_to"),
        ],
        "defence-events" => &[
            ("ID", "/id"),
            ("SERVICE", "/service"),
            ("STARTED", "/started"),
            ("DETECTED", "/detected"),
            ("ENDED", "/ended"),
            ("MODE", "/mode"),
            ("PEAK RPS", "/peak_rps"),
            ("TOP SOURCES", "/top_sources"),
            ("RULE", "/rule"),
            ("DROPPED", "/dropped"),
            ("NODES", "/nodes"),
        ],
        _ => &[("ID", "/id")],
    }
}

/// A cell's text: scalars as they are, lists joined by commas, objects compactly.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".into(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Object(o) if o.contains_key("address") => cell(o.get("address")),
                other => cell(Some(other)),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(o)) if o.is_empty() => "-".into(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(Some(v))))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

pub fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t
}

/// Prints a list of items as a table (or JSON).
pub fn print_list(kind: &str, items: &Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
        return;
    }
    let cols = columns(kind);
    let mut t = table();
    t.set_header(cols.iter().map(|(h, _)| Cell::new(h)));
    for item in items.as_array().into_iter().flatten() {
        t.add_row(cols.iter().map(|(_, p)| cell(item.pointer(p))));
    }
    println!("{t}");
}

/// Prints one item as a field/value table (or JSON).
pub fn print_one(item: &Value, json: bool) {
    if json || !item.is_object() {
        println!("{}", serde_json::to_string_pretty(item).unwrap_or_default());
        return;
    }
    let mut t = table();
    for (k, v) in item.as_object().into_iter().flatten() {
        let text = match v {
            Value::Object(_) | Value::Array(_) if !v.to_string().contains('{') => cell(Some(v)),
            Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
            _ => cell(Some(v)),
        };
        t.add_row(vec![Cell::new(k), Cell::new(text)]);
    }
    println!("{t}");
}

pub use lingjing_model::units::human_bytes;

/// Milliseconds since the epoch as RFC 3339 in UTC, to the second
/// (`2026-03-01T08:30:00Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = lingjing_model::units::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_read_as_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_772_353_800_999), "2026-03-01T08:30:00Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59Z");
    }
}
