//! Invoice output formats: CSV (RFC 4180) and a printable, self-contained HTML page.
//! Every user-supplied string is quoted (CSV) or escaped (HTML).

use std::fmt::Write as _;

use crate::invoice::{Invoice, Line, Uptime};
use crate::month::format_utc;

const CSV_HEADER: &str = "category,description,quantity,unit,unit_price,amount,basis";

/// The invoice as CSV: a header, one row per line, then `subtotal`, `credits`, `tax`
/// and `total` rows (amount column only). CRLF line ends, RFC 4180 quoting.
pub fn to_csv(inv: &Invoice) -> String {
    let mut out = String::new();
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for line in &inv.lines {
        out.push_str(&csv_row(line));
    }
    for (name, amount) in summary(inv) {
        out.push_str(&format!("{name},,,,,{amount},\r\n"));
    }
    out
}

/// The invoice as a complete HTML5 page with inline CSS (prints on A4/Letter).
pub fn to_html(inv: &Invoice) -> String {
    let mut page = String::new();
    page.push_str(&html_head(inv));
    page.push_str(&html_header(inv));
    page.push_str(&html_lines(inv));
    page.push_str(&html_uptime(&inv.uptime));
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

fn summary(inv: &Invoice) -> [(&'static str, String); 4] {
    [
        ("subtotal", inv.subtotal.to_string()),
        ("credits", inv.credits.to_string()),
        ("tax", inv.tax.to_string()),
        ("total", inv.total.to_string()),
    ]
}

fn csv_row(line: &Line) -> String {
    let fields = [
        line.category.as_str().to_string(),
        line.description.clone(),
        line.quantity.to_string(),
        line.unit.clone(),
        line.unit_price.to_string(),
        line.amount.to_string(),
        line.basis.clone(),
    ];
    let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    format!("{}\r\n", quoted.join(","))
}

/// Quotes a field that contains a comma, a quote, CR or LF; quotes inside are doubled.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#111;margin:0;background:#fff}
main{max-width:60rem;margin:2rem auto;padding:0 1.5rem}
h1{font-size:1.6rem;margin:0 0 .5rem}
h2{font-size:1.1rem;margin:2rem 0 .5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0 0 1.5rem}
dt{color:#555}dd{margin:0}
table{width:100%;border-collapse:collapse;font-size:.9rem}
th,td{padding:.35rem .5rem;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}
th{background:#f4f4f4}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.basis td{color:#666;font-size:.8rem;border-bottom:1px solid #bbb;padding-top:0}
tfoot td{font-weight:600;border-bottom:none}
tfoot tr.total td{font-size:1.05rem;border-top:2px solid #111}
@media print{main{margin:0;max-width:none}th{background:none}tr{break-inside:avoid}}
";

fn html_head(inv: &Invoice) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Invoice {} — {} — {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&inv.number),
        escape(&inv.tenant),
        inv.month,
    )
}

fn html_header(inv: &Invoice) -> String {
    let rows = [
        ("Invoice", inv.number.as_str()),
        ("Tenant", inv.tenant.as_str()),
        ("Plan", inv.plan.as_str()),
        ("Currency", inv.currency.as_str()),
    ];
    let mut out = format!("<h1>Invoice {}</h1>\n<dl>\n", escape(&inv.number));
    for (name, value) in rows {
        let _ = writeln!(out, "<dt>{name}</dt><dd>{}</dd>", escape(value));
    }
    let _ = writeln!(out, "<dt>Period</dt><dd>{}</dd>\n</dl>", inv.month);
    out
}

fn html_lines(inv: &Invoice) -> String {
    let mut out = String::from(
        "<table class=\"lines\">\n<thead><tr><th>Category</th><th>Description</th>\
         <th class=\"num\">Quantity</th><th>Unit</th><th class=\"num\">Unit price</th>\
         <th class=\"num\">Amount</th></tr></thead>\n<tbody>\n",
    );
    for line in &inv.lines {
        out.push_str(&html_line(line));
    }
    out.push_str("</tbody>\n<tfoot>\n");
    let currency = escape(&inv.currency);
    for (name, amount) in summary(inv) {
        let class = if name == "total" {
            " class=\"total\""
        } else {
            ""
        };
        let label = capitalize(name);
        let _ = writeln!(
            out,
            "<tr{class}><td colspan=\"5\">{label}</td><td class=\"num\">{amount} {currency}</td></tr>"
        );
    }
    out.push_str("</tfoot>\n</table>\n");
    out
}

fn html_line(line: &Line) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n\
         <tr class=\"basis\"><td></td><td colspan=\"5\">{}</td></tr>\n",
        line.category.label(),
        escape(&line.description),
        line.quantity,
        escape(&line.unit),
        line.unit_price,
        line.amount,
        escape(&line.basis),
    )
}

fn html_uptime(uptime: &[Uptime]) -> String {
    if uptime.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Service levels</h2>\n<table class=\"uptime\">\n<thead><tr><th>Service</th>\
         <th class=\"num\">Uptime</th><th class=\"num\">Target</th>\
         <th class=\"num\">Downtime</th><th class=\"num\">Credit</th><th>Outages</th></tr></thead>\n<tbody>\n",
    );
    for u in uptime {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}%</td><td class=\"num\">{}%</td>\
             <td class=\"num\">{} min</td><td class=\"num\">{}%</td><td>{}</td></tr>",
            u.category.label(),
            u.percent,
            u.target_percent,
            u.downtime_minutes,
            u.credit_percent.normalize(),
            outage_items(u),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn outage_items(uptime: &Uptime) -> String {
    if uptime.outages.is_empty() {
        return "none".into();
    }
    let items: Vec<String> = uptime
        .outages
        .iter()
        .map(|o| {
            format!(
                "<li>{} to {}: {}</li>",
                format_utc(o.start_ms),
                format_utc(o.end_ms),
                escape(&o.what)
            )
        })
        .collect();
    format!("<ul>{}</ul>", items.concat())
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::{Category, Outage, round_money};
    use crate::month::Month;
    use crate::test_util::d;

    fn invoice() -> Invoice {
        let line =
            |category, description: &str, quantity: &str, unit: &str, price: &str, basis: &str| {
                Line {
                    category,
                    description: description.into(),
                    quantity: d(quantity),
                    unit: unit.into(),
                    unit_price: d(price),
                    amount: round_money(d(quantity) * d(price)),
                    basis: basis.into(),
                }
            };
        Invoice {
            number: "INV-7".into(),
            tenant: "acme <script>alert(1)</script>".into(),
            month: Month {
                year: 2026,
                month: 11,
            },
            plan: "p&q".into(),
            currency: "CNY".into(),
            lines: vec![
                line(Category::Cdn, "CDN commit", "1", "month", "100.00", "plain"),
                line(
                    Category::Colocation,
                    "Cabinet \"A,1\" <script>alert('x')</script>",
                    "0.5",
                    "cabinet-month",
                    "800",
                    "line one\nline two",
                ),
                line(Category::Credit, "SLA credit: CDN", "10", "%", "-1", "a, b"),
            ],
            subtotal: d("500.00"),
            credits: d("-10.00"),
            tax: d("0.00"),
            total: d("490.00"),
            uptime: vec![Uptime {
                category: Category::Cdn,
                percent: d("99.7222"),
                target_percent: d("99.90"),
                downtime_minutes: d("120"),
                outages: vec![Outage {
                    category: Category::Cdn,
                    start_ms: 0,
                    end_ms: 60_000,
                    what: "<b>edge</b>".into(),
                }],
                credit_percent: d("10"),
            }],
        }
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        let csv = to_csv(&invoice());
        let expected = "category,description,quantity,unit,unit_price,amount,basis\r\n\
            cdn,CDN commit,1,month,100.00,100.00,plain\r\n\
            colocation,\"Cabinet \"\"A,1\"\" <script>alert('x')</script>\",0.5,cabinet-month,800,400.00,\"line one\nline two\"\r\n\
            credit,SLA credit: CDN,10,%,-1,-10.00,\"a, b\"\r\n\
            subtotal,,,,,500.00,\r\n\
            credits,,,,,-10.00,\r\n\
            tax,,,,,0.00,\r\n\
            total,,,,,490.00,\r\n";
        assert_eq!(csv, expected);
    }

    #[test]
    fn csv_field_rules() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
    }

    #[test]
    fn html_escapes_user_text() {
        let html = to_html(&invoice());
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(!html.contains("<script>"), "unescaped script tag");
        assert!(!html.contains("<b>edge"));
        assert!(
            html.contains(
                "Cabinet &quot;A,1&quot; &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
            )
        );
        assert!(html.contains("acme &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<dd>p&amp;q</dd>"));
        assert!(html.contains("&lt;b&gt;edge&lt;/b&gt;"));
        assert!(html.contains("<td class=\"num\">490.00 CNY</td>"));
        assert!(html.contains("<td class=\"num\">99.7222%</td>"));
        assert!(html.contains("<style>"));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
