//! Seeding the demo topology through the REST API, idempotently: what exists is kept, what
//! is missing is created, so a second `lingjing up` duplicates nothing.

use lingjing_client::{Client, ClientError};
use lingjing_demo::DemoTopology;
use serde::Serialize;
use serde_json::{Value, json};

/// Creates `item` unless one with its id exists; true when it was created.
async fn ensure<T: Serialize>(
    c: &Client,
    plural: &str,
    id: &str,
    item: &T,
) -> Result<bool, ClientError> {
    match c.get::<Value>(&format!("/v1/{plural}/{id}")).await {
        Ok(_) => Ok(false),
        Err(e) if e.status() == Some(404) => {
            c.post::<_, Value>(&format!("/v1/{plural}"), item).await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Seeds `topology`; returns how many resources were created.
pub async fn seed(c: &Client, t: &DemoTopology) -> Result<usize, ClientError> {
    let mut created = 0;
    for r in &t.regions {
        created += usize::from(ensure(c, "regions", &r.id, r).await?);
    }
    for l in &t.lines {
        created += usize::from(ensure(c, "lines", &l.id, l).await?);
    }
    for line in &t.lines {
        let have: Vec<Value> = c.get(&format!("/v1/lines/{}/prefixes", line.id)).await?;
        if have.is_empty() {
            let mine: Vec<_> = t.prefixes.iter().filter(|p| p.line == line.id).collect();
            c.put::<_, Value>(&format!("/v1/lines/{}/prefixes", line.id), &mine)
                .await?;
            created += 1;
        }
    }
    for s in &t.sites {
        created += usize::from(ensure(c, "sites", &s.id, s).await?);
    }
    for n in &t.nodes {
        created += usize::from(ensure(c, "nodes", &n.id, n).await?);
    }
    for p in &t.pools {
        created += usize::from(ensure(c, "pools", &p.id, p).await?);
    }
    for (pool, node) in &t.allocations {
        let view: Value = c.get(&format!("/v1/nodes/{node}")).await?;
        let has_address = view["addresses"].as_array().is_some_and(|a| !a.is_empty());
        if !has_address {
            c.post::<_, Value>(
                &format!("/v1/pools/{pool}/allocations"),
                &json!({ "node": node }),
            )
            .await?;
            created += 1;
        }
    }
    for tenant in &t.tenants {
        created += usize::from(ensure(c, "tenants", &tenant.id, tenant).await?);
    }
    for s in &t.services {
        created += usize::from(ensure(c, "services", &s.id, s).await?);
        // The demo's hostnames are the operator's own: approved, not proven by DNS.
        c.post::<_, Value>(
            &format!("/v1/services/{}/verify", s.id),
            &serde_json::json!({ "approve": true }),
        )
        .await?;
    }
    Ok(created)
}

/// The demo price plan: CDN by the 95th percentile of traffic out (10 Mbps committed),
/// object storage by GB-month, requests and egress, 6% tax, and a 99.90% SLA.
pub fn demo_plan() -> Value {
    json!({
        "id": "demo-standard",
        "name": "Demo standard (CDN 95th percentile + storage)",
        "currency": "CNY",
        "tax_rate": "0.06",
        "cdn": {"kind": "percentile95", "direction": "max", "commit_mbps": "10",
                "commit_fee": "800.00", "overage_per_mbps": "12.00"},
        "storage": {"per_gb_month": "0.12", "per_10k_requests": "0.01", "egress_per_gb": "0.50"},
        "sla": {"target_percent": "99.90", "schedule": [
            {"below_percent": "99.90", "credit_percent": "10"},
            {"below_percent": "99.00", "credit_percent": "25"}]}
    })
}

/// The demo colocation plan: per cabinet-month and contracted kW-month, 6% tax, 99.90%.
pub fn demo_colocation_plan() -> Value {
    json!({
        "id": "demo-colocation",
        "name": "Demo colocation (cabinet + power)",
        "currency": "CNY",
        "tax_rate": "0.06",
        "colocation": {"per_cabinet_month": "4500.00", "per_kw_month": "600.00"},
        "sla": {"target_percent": "99.90", "schedule": [
            {"below_percent": "99.90", "credit_percent": "10"},
            {"below_percent": "99.00", "credit_percent": "25"}]}
    })
}

/// Puts `tenant` on `plan` unless it is on one already; true when it was put.
async fn ensure_plan(c: &Client, tenant: &str, plan: &str) -> Result<bool, ClientError> {
    let on: Value = c.get(&format!("/v1/tenants/{tenant}/plan")).await?;
    if on["plan"].is_null() {
        c.put::<_, Value>(
            &format!("/v1/tenants/{tenant}/plan"),
            &json!({"plan": plan}),
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}

/// Seeds IDC monitoring's demo: at `wuxi-1` (watched by its edge AI node), device
/// `wuxi-1-env-1` reports an inlet temperature and a smoke detector, and `wuxi-1-pdu-1`
/// a power draw against a 5 kW contract. True when anything was created.
pub async fn seed_monitor(c: &Client) -> Result<bool, ClientError> {
    let mut created = false;
    for mut sensor in [
        json!({"id": "wuxi-1-inlet-1", "kind": "temperature", "device": "wuxi-1-env-1"}),
        json!({"id": "wuxi-1-smoke-1", "kind": "smoke", "device": "wuxi-1-env-1"}),
        json!({"id": "wuxi-1-pdu-1", "kind": "power", "device": "wuxi-1-pdu-1",
               "contract_watts": 5000}),
    ] {
        sensor["site"] = json!("wuxi-1");
        sensor["room"] = json!("hall-1");
        sensor["interval_s"] = json!(60);
        let id = sensor["id"].as_str().unwrap_or_default().to_owned();
        created |= ensure(c, "sensors", &id, &sensor).await?;
    }
    Ok(created)
}

/// Seeds billing: the demo plans; tenant `demo` on the CDN plan; a colocation tenant
/// (`colo-demo`) holding a cabinet and half of another at `nanjing-1` since the first of
/// this month, on the colocation plan; and the sites' costs (a hall lease, power, and a
/// transit contract priced by the 95th percentile). True when anything was created.
pub async fn seed_billing(c: &Client) -> Result<bool, ClientError> {
    let mut created = ensure(c, "plans", "demo-standard", &demo_plan()).await?;
    created |= ensure(c, "plans", "demo-colocation", &demo_colocation_plan()).await?;
    created |= ensure_plan(c, "demo", "demo-standard").await?;
    let tenant = json!({"id": "colo-demo", "name": "Colocation demo customer"});
    created |= ensure(c, "tenants", "colo-demo", &tenant).await?;
    created |= ensure_plan(c, "colo-demo", "demo-colocation").await?;
    let now = time::OffsetDateTime::now_utc();
    let first = format!("{:04}-{:02}-01", now.year(), u8::from(now.month()));
    for (id, units) in [("nanjing-1-a01", None), ("nanjing-1-a02", Some([1, 21]))] {
        let mut a = json!({"tenant": "colo-demo", "from": first});
        if let Some(u) = units {
            a["units"] = json!(u);
        }
        let cabinet = json!({"id": id, "site": "nanjing-1", "room": "hall-1", "rack_units": 42,
            "contracted_watts": 6000, "assignments": [a]});
        created |= ensure(c, "cabinets", id, &cabinet).await?;
    }
    let have: Vec<Value> = c.get("/v1/costs").await?;
    if have.is_empty() {
        for cost in [
            json!({"id": "nanjing-1-lease", "site": "nanjing-1", "segment": "idc",
                "description": "Hall lease and cooling", "basis": {"kind": "flat", "monthly": "3000.00"}}),
            json!({"id": "nanjing-1-power", "site": "nanjing-1", "segment": "idc",
                "description": "Utility power", "basis": {"kind": "flat", "monthly": "2400.00"}}),
            json!({"id": "wuxi-1-transit", "site": "wuxi-1",
                "description": "Telecom transit (95th percentile)",
                "basis": {"kind": "percentile95", "direction": "max", "price_per_mbps": "8.00",
                          "commit_mbps": "50"}}),
        ] {
            let id = cost["id"].as_str().unwrap_or_default().to_owned();
            c.put::<_, Value>(&format!("/v1/costs/{id}"), &cost).await?;
        }
        created = true;
    }
    Ok(created)
}
