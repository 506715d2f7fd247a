//! `lingjing usage`, `lingjing plan`, `lingjing bill` and `lingjing invoice`: metered
//! traffic, price plans, billing runs and invoices (`/v1/usage`, `/v1/plans`,
//! `/v1/billing/runs`, `/v1/invoices`).

use anyhow::Context;
use comfy_table::Cell;
use serde_json::{Value, json};

use super::resources::{explain, read_resource};
use crate::args::{BillCmd, Global, InvoiceCmd, PlanCmd, UsageArgs};
use crate::context::client;
use crate::output::{human_bytes, print_list, print_one, table};

/// `&name=value` for each filter given.
fn query(pairs: &[(&str, &Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("&{k}={}", encode(v))))
        .collect()
}

/// Percent-encodes what a query value may not hold as it is (`+` in a time zone).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn usage(global: &Global, args: UsageArgs) -> anyhow::Result<()> {
    let c = client(global)?;
    let path = format!(
        "/v1/usage?group={}&step={}{}",
        encode(&args.group),
        encode(&args.step),
        query(&[
            ("from", &args.from),
            ("to", &args.to),
            ("tenant", &args.tenant),
            ("service", &args.service),
            ("node", &args.node),
            ("site", &args.site),
            ("line", &args.line),
        ])
    );
    let report: Value = c.get(&path).await.map_err(explain)?;
    if global.json {
        print_one(&report, true);
        return Ok(());
    }
    let mut t = table();
    t.set_header(
        [
            args.group.to_uppercase().as_str(),
            "START",
            "REQUESTS",
            "HIT %",
            "BYTES OUT",
            "BYTES IN",
        ]
        .map(Cell::new),
    );
    let row = |key: &str, start: &str, counts: &Value| -> Vec<Cell> {
        let n = |k: &str| counts[k].as_u64().unwrap_or(0);
        let hit = if n("requests") == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.1}",
                n("hit_requests") as f64 * 100.0 / n("requests") as f64
            )
        };
        vec![
            Cell::new(key),
            Cell::new(start),
            Cell::new(n("requests")),
            Cell::new(hit),
            Cell::new(human_bytes(n("bytes_out"))),
            Cell::new(human_bytes(n("bytes_in"))),
        ]
    };
    for s in report["series"].as_array().into_iter().flatten() {
        let key = s["key"].as_str().unwrap_or("?");
        if args.steps {
            for p in s["points"].as_array().into_iter().flatten() {
                t.add_row(row(key, p["start"].as_str().unwrap_or("?"), p));
            }
        }
        t.add_row(row(key, "(total)", &s["total"]));
    }
    t.add_row(row("(all)", "(total)", &report["total"]));
    println!("{t}");
    println!(
        "{} to {}, in steps of {}",
        report["from"].as_str().unwrap_or("?"),
        report["to"].as_str().unwrap_or("?"),
        report["step"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `PUT /v1/{plural}/{id}` of the JSON or TOML document in `file`, named by its `id`.
pub(super) async fn put_file(
    c: &lingjing_client::Client,
    plural: &str,
    file: &std::path::Path,
) -> anyhow::Result<String> {
    let body = read_resource(file)?;
    let id = body["id"]
        .as_str()
        .with_context(|| format!("{} has no `id`", file.display()))?
        .to_owned();
    let _: Value = c
        .put(&format!("/v1/{plural}/{id}"), &body)
        .await
        .map_err(explain)?;
    Ok(id)
}

/// `DELETE /v1/{plural}/{id}`, said as `{kind} {id} deleted`.
pub(super) async fn remove(
    c: &lingjing_client::Client,
    plural: &str,
    kind: &str,
    id: &str,
) -> anyhow::Result<()> {
    c.delete(&format!("/v1/{plural}/{id}"))
        .await
        .map_err(explain)?;
    println!("{kind} {id} deleted");
    Ok(())
}

pub async fn plan(global: &Global, cmd: PlanCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        PlanCmd::List => {
            let plans: Value = c.get("/v1/plans").await.map_err(explain)?;
            print_list("plans", &plans, global.json);
        }
        PlanCmd::Show { id } => {
            let plan: Value = c.get(&format!("/v1/plans/{id}")).await.map_err(explain)?;
            print_one(&plan, true);
        }
        PlanCmd::Add { file } => {
            let body = read_resource(&file)?;
            let plan: Value = c.post("/v1/plans", &body).await.map_err(explain)?;
            println!("plan {} added", plan["id"].as_str().unwrap_or("?"));
        }
        PlanCmd::Replace { file } => {
            let id = put_file(&c, "plans", &file).await?;
            println!("plan {id} replaced; invoices already made keep their prices");
        }
        PlanCmd::Rm { id } => remove(&c, "plans", "plan", &id).await?,
        PlanCmd::Assign { tenant, plan, .. } => {
            let _: Value = c
                .put(
                    &format!("/v1/tenants/{tenant}/plan"),
                    &json!({ "plan": plan }),
                )
                .await
                .map_err(explain)?;
            match plan {
                Some(p) => println!("tenant {tenant} is on plan {p}"),
                None => println!("tenant {tenant} is on no plan (not billed)"),
            }
        }
    }
    Ok(())
}

pub async fn bill(global: &Global, cmd: BillCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    let BillCmd::Run { month } = cmd;
    let month = match month {
        Some(m) => m,
        None => {
            let now = time::OffsetDateTime::now_utc();
            format!("{:04}-{:02}", now.year(), u8::from(now.month()))
        }
    };
    let result: Value = c
        .post("/v1/billing/runs", &json!({ "month": month }))
        .await
        .map_err(explain)?;
    if global.json {
        print_one(&result, true);
        return Ok(());
    }
    let closed = result["closed"].as_bool().unwrap_or(false);
    let lines = result["invoices"].as_array().cloned().unwrap_or_default();
    if lines.is_empty() {
        println!(
            "No tenant is on a plan: nothing to bill (lingjing plan add -f PLAN.toml; lingjing plan assign TENANT PLAN)"
        );
        return Ok(());
    }
    for l in &lines {
        let number = l["number"].as_str().unwrap_or("?");
        let record: Value = c
            .get(&format!("/v1/invoices/{number}"))
            .await
            .map_err(explain)?;
        print_invoice(&record, l["outcome"].as_str().unwrap_or("?"));
    }
    if closed {
        println!(
            "{month} has ended: its invoices are final (a rerun changes nothing; correct one with lingjing invoice credit)."
        );
    } else {
        println!(
            "{month} is still running: these are drafts, made again by each run until the month ends."
        );
    }
    Ok(())
}

/// An invoice as a table of lines with its totals.
fn print_invoice(record: &Value, outcome: &str) {
    let inv = &record["invoice"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!(
        "{} {} for tenant {} ({}), plan {}, {} [{outcome}]",
        s(&record["kind"]).replace('_', " "),
        s(&inv["number"]),
        s(&inv["tenant"]),
        s(&inv["month"]),
        s(&inv["plan"]),
        s(&inv["currency"]),
    );
    let mut t = table();
    t.set_header(
        [
            "DESCRIPTION",
            "QUANTITY",
            "UNIT",
            "UNIT PRICE",
            "AMOUNT",
            "BASIS",
        ]
        .map(Cell::new),
    );
    for l in inv["lines"].as_array().into_iter().flatten() {
        t.add_row([
            s(&l["description"]),
            s(&l["quantity"]),
            s(&l["unit"]),
            s(&l["unit_price"]),
            s(&l["amount"]),
            s(&l["basis"]),
        ]);
    }
    for (name, key) in [
        ("Subtotal", "subtotal"),
        ("Credits", "credits"),
        ("Tax", "tax"),
        ("Total", "total"),
    ] {
        t.add_row([
            name.to_owned(),
            String::new(),
            String::new(),
            String::new(),
            s(&inv[key]),
            String::new(),
        ]);
    }
    println!("{t}");
    for u in inv["uptime"].as_array().into_iter().flatten() {
        println!(
            "uptime {}: {}% (target {}%, {} minutes down, credit {}%)",
            s(&u["category"]),
            s(&u["percent"]),
            s(&u["target_percent"]),
            s(&u["downtime_minutes"]),
            s(&u["credit_percent"]),
        );
    }
    println!();
}

pub async fn invoice(global: &Global, cmd: InvoiceCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        InvoiceCmd::List { tenant, month } => {
            let q = query(&[("tenant", &tenant), ("month", &month)]);
            let path = format!("/v1/invoices?{}", q.trim_start_matches('&'));
            let list: Value = c.get(&path).await.map_err(explain)?;
            print_list("invoices", &list, global.json);
        }
        InvoiceCmd::Show {
            number,
            format,
            output,
        } => {
            let text = match format.as_str() {
                "table" => {
                    let record: Value = c
                        .get(&format!("/v1/invoices/{number}"))
                        .await
                        .map_err(explain)?;
                    if global.json {
                        serde_json::to_string_pretty(&record)?
                    } else {
                        print_invoice(&record, "kept");
                        return Ok(());
                    }
                }
                "json" | "csv" | "html" => c
                    .get_text(&format!("/v1/invoices/{number}?format={format}"))
                    .await
                    .map_err(explain)?,
                other => anyhow::bail!("--format {other:?}: use table, json, csv or html"),
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("{number} written to {}", path.display());
                }
                None => println!("{text}"),
            }
        }
        InvoiceCmd::Credit {
            number,
            amount,
            reason,
        } => {
            let note: Value = c
                .post(
                    &format!("/v1/invoices/{number}/credit-notes"),
                    &json!({ "amount": amount, "reason": reason }),
                )
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&note, true);
            } else {
                println!(
                    "credit note {} on {number}: {} {}",
                    note["invoice"]["number"].as_str().unwrap_or("?"),
                    note["invoice"]["total"].as_str().unwrap_or("?"),
                    note["invoice"]["currency"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
