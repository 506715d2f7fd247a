//! `lingjing cabinet`, `lingjing cost`, `lingjing incident` and `lingjing report
//! segments`: the colocation inventory, the operator's costs per site, incident records,
//! and the segment report (`/v1/cabinets`, `/v1/costs`, `/v1/incidents`,
//! `/v1/reports/segments`).

use anyhow::{Context, bail};
use comfy_table::Cell;
use serde_json::{Value, json};

use super::resources::{AddFields, explain, resource};
use crate::args::{CabinetAdd, CabinetCmd, CostCmd, Global, IncidentCmd, ReportCmd};
use crate::context::client;
use crate::output::{print_list, print_one, table};

impl AddFields for CabinetAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let need = |v: &Option<String>, flag: &str| -> anyhow::Result<String> {
            v.clone().with_context(|| {
                format!("--{flag} is required (or give the whole cabinet with -f FILE)")
            })
        };
        Ok(json!({
            "id": id,
            "site": need(&self.site, "site")?,
            "room": need(&self.room, "room")?,
            "rack_units": self.rack_units,
            "contracted_watts": self.contracted_watts.context("--contracted-watts is required (5000 = 5 kW)")?,
        }))
    }
}

/// Today, `YYYY-MM-DD` (UTC).
fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// The cabinet as the API takes it back (its view less `warnings`).
fn without_warnings(mut view: Value) -> Value {
    if let Some(o) = view.as_object_mut() {
        o.remove("warnings");
    }
    view
}

pub async fn cabinet(global: &Global, cmd: CabinetCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    let (id, mut body, what) = match cmd {
        CabinetCmd::Resource(r) => return resource(global, "cabinets", r).await,
        CabinetCmd::Assign {
            cabinet,
            tenant,
            units,
            power_watts,
            from,
            until,
        } => {
            let units = match units {
                None => Value::Null,
                Some(u) => {
                    let (a, b) = u
                        .split_once('-')
                        .with_context(|| format!("--units {u:?}: give FIRST-LAST, e.g. 1-10"))?;
                    let n = |s: &str| -> anyhow::Result<u16> {
                        s.trim()
                            .parse()
                            .with_context(|| format!("--units {u:?}: {s:?} is not a unit number"))
                    };
                    json!([n(a)?, n(b)?])
                }
            };
            let body: Value = c
                .get(&format!("/v1/cabinets/{cabinet}"))
                .await
                .map_err(explain)?;
            let mut body = without_warnings(body);
            let mut a = json!({"tenant": tenant, "from": from.unwrap_or_else(today)});
            if !units.is_null() {
                a["units"] = units;
            }
            if let Some(w) = power_watts {
                a["power_watts"] = json!(w);
            }
            if let Some(u) = until {
                a["until"] = json!(u);
            }
            match body["assignments"].as_array_mut() {
                Some(list) => list.push(a),
                None => body["assignments"] = json!([a]),
            }
            (cabinet, body, format!("assigned to {tenant}"))
        }
        CabinetCmd::Release {
            cabinet,
            tenant,
            on,
        } => {
            let body: Value = c
                .get(&format!("/v1/cabinets/{cabinet}"))
                .await
                .map_err(explain)?;
            let mut body = without_warnings(body);
            let on = on.unwrap_or_else(today);
            let mut ended = 0;
            for a in body["assignments"].as_array_mut().into_iter().flatten() {
                if a["tenant"] == tenant.as_str() && a["until"].is_null() {
                    a["until"] = json!(on);
                    ended += 1;
                }
            }
            if ended == 0 {
                bail!("{tenant} holds nothing open-ended in cabinet {cabinet}");
            }
            (cabinet, body, format!("released by {tenant} on {on}"))
        }
    };
    let view: Value = c
        .put(&format!("/v1/cabinets/{id}"), &body)
        .await
        .map_err(explain)?;
    body = view;
    if global.json {
        print_one(&body, true);
        return Ok(());
    }
    println!("cabinet {id} {what}");
    for w in body["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", w.as_str().unwrap_or("?"));
    }
    Ok(())
}

pub async fn cost(global: &Global, cmd: CostCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        CostCmd::List => {
            let list: Value = c.get("/v1/costs").await.map_err(explain)?;
            print_list("costs", &list, global.json);
        }
        CostCmd::Set { file } => {
            let id = super::billing::put_file(&c, "costs", &file).await?;
            println!("cost {id} kept");
        }
        CostCmd::Rm { id } => super::billing::remove(&c, "costs", "cost", &id).await?,
    }
    Ok(())
}

pub async fn incident(global: &Global, cmd: IncidentCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        IncidentCmd::List { from, to } => {
            let mut q = Vec::new();
            if let Some(f) = from {
                q.push(format!("from={f}"));
            }
            if let Some(t) = to {
                q.push(format!("to={t}"));
            }
            let list: Value = c
                .get(&format!("/v1/incidents?{}", q.join("&")))
                .await
                .map_err(explain)?;
            print_list("incidents", &list, global.json);
        }
        IncidentCmd::Add {
            id,
            site,
            start,
            end,
            what,
        } => {
            let body = json!({"id": id, "site": site, "start": start, "end": end, "what": what});
            let _: Value = c.post("/v1/incidents", &body).await.map_err(explain)?;
            println!("incident {id} recorded");
        }
        IncidentCmd::Rm { id } => super::billing::remove(&c, "incidents", "incident", &id).await?,
    }
    Ok(())
}

pub async fn report(global: &Global, cmd: ReportCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    let ReportCmd::Segments { month } = cmd;
    let path = match &month {
        Some(m) => format!("/v1/reports/segments?month={m}"),
        None => "/v1/reports/segments".to_owned(),
    };
    let r: Value = c.get(&path).await.map_err(explain)?;
    if global.json {
        print_one(&r, true);
        return Ok(());
    }
    let s = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    println!("Segment report, {} ({})", s(&r["month"]), s(&r["currency"]));
    let mut t = table();
    t.set_header(
        [
            "SEGMENT",
            "REVENUE",
            "SHARE %",
            "COST",
            "GROSS MARGIN",
            "MARGIN %",
        ]
        .map(Cell::new),
    );
    for l in r["segments"].as_array().into_iter().flatten() {
        t.add_row([
            s(&l["segment"]),
            s(&l["revenue"]),
            s(&l["share_of_revenue_percent"]),
            s(&l["cost"]),
            s(&l["gross_margin"]),
            s(&l["margin_percent"]),
        ]);
    }
    let total = &r["total"];
    t.add_row([
        "total".to_owned(),
        s(&total["revenue"]),
        "100".to_owned(),
        s(&total["cost"]),
        s(&total["gross_margin"]),
        s(&total["margin_percent"]),
    ]);
    println!("{t}");
    let mut t = table();
    t.set_header(["SITE", "REVENUE", "COST", "GROSS MARGIN", "MARGIN %"].map(Cell::new));
    for l in r["sites"].as_array().into_iter().flatten() {
        t.add_row([
            s(&l["site"]),
            s(&l["revenue"]),
            s(&l["cost"]),
            s(&l["gross_margin"]),
            s(&l["margin_percent"]),
        ]);
    }
    println!("{t}");
    let mut t = table();
    t.set_header(["COST", "SITE", "SEGMENT", "AMOUNT", "BASIS"].map(Cell::new));
    for l in r["costs"].as_array().into_iter().flatten() {
        t.add_row([
            s(&l["description"]),
            s(&l["site"]),
            l["segment"].as_str().unwrap_or("shared").to_owned(),
            s(&l["amount"]),
            s(&l["basis"]),
        ]);
    }
    println!("{t}");
    Ok(())
}
