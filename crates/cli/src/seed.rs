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
