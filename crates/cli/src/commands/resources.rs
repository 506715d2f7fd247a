//! Operator commands on resources: list, show, add, rm for every kind, plus the extras
//! (line import, pool allocate/release, tenant keys).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use lingjing_client::ClientError;
use lingjing_model::{
    DnsRecord, IpPool, Line, Node, NodePorts, NodeRole, Origin, Region, Service, Site,
    SteeringPolicy, Tenant,
};
use serde_json::{Value, json};

use crate::args::{
    AddArgs, Global, LineAdd, LineCmd, NodeAdd, NodeCmd, PoolAdd, PoolCmd, RecordAdd, RegionAdd,
    ResourceCmd, ServiceAdd, ServiceCmd, SiteAdd, SlaCmd, TenantAdd, TenantCmd,
};
use crate::context::client;
use crate::output::{print_list, print_one};

/// Turns `add` flags into the resource's JSON.
pub trait AddFields: Args {
    fn to_resource(&self, id: String) -> anyhow::Result<Value>;
}

fn need<'a>(v: &'a Option<String>, flag: &str) -> anyhow::Result<&'a String> {
    v.as_ref()
        .with_context(|| format!("--{flag} is required (or give the whole resource with -f FILE)"))
}

fn parse_enum<T: serde::de::DeserializeOwned>(flag: &str, value: &str) -> anyhow::Result<T> {
    serde_json::from_value(Value::String(value.to_owned()))
        .map_err(|_| anyhow::anyhow!("--{flag} `{value}` is not one of the accepted values"))
}

impl AddFields for RegionAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let r = Region {
            name: self.name.clone().unwrap_or_else(|| id.clone()),
            id,
            parent: self.parent.clone(),
            level: parse_enum("level", &self.level)?,
            tier: parse_enum("tier", &self.tier)?,
        };
        Ok(serde_json::to_value(r)?)
    }
}

impl AddFields for LineAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let l = Line {
            name: self.name.clone().unwrap_or_else(|| id.clone()),
            id,
            description: self.description.clone(),
        };
        Ok(serde_json::to_value(l)?)
    }
}

impl AddFields for RecordAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        if self.values.is_empty() {
            bail!(
                "--value is required (repeat it for several values), or give the whole record with -f FILE"
            );
        }
        let r = DnsRecord {
            id,
            name: need(&self.name, "name")?.clone(),
            rtype: parse_enum("type", &need(&self.rtype, "type")?.to_ascii_uppercase())?,
            ttl: self.ttl,
            values: self.values.clone(),
        };
        Ok(serde_json::to_value(r)?)
    }
}

impl AddFields for SiteAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let s = Site {
            name: self.name.clone().unwrap_or_else(|| id.clone()),
            id,
            region: need(&self.region, "region")?.clone(),
            lines: self.lines.clone(),
            bandwidth_mbps: self.bandwidth_mbps,
            parent: self.parent.clone(),
        };
        Ok(serde_json::to_value(s)?)
    }
}

impl AddFields for NodeAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let roles = self
            .roles
            .iter()
            .map(|r| parse_enum::<NodeRole>("roles", r))
            .collect::<anyhow::Result<_>>()?;
        let n = Node {
            id,
            site: need(&self.site, "site")?.clone(),
            roles,
            ports: NodePorts {
                http: self.http_port,
                https: self.https_port,
                admin: self.admin_port,
            },
            capacity_mbps: self.capacity_mbps,
            drained: false,
        };
        Ok(serde_json::to_value(n)?)
    }
}

impl AddFields for PoolAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let cidr = need(&self.cidr, "cidr")?;
        let p = IpPool {
            id,
            site: need(&self.site, "site")?.clone(),
            line: self.line.clone(),
            cidr: cidr.parse().with_context(|| {
                format!("--cidr `{cidr}` is not a CIDR prefix like 10.1.0.0/24")
            })?,
            reserved: self
                .reserved
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("--reserved `{a}` is not an IP address"))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(serde_json::to_value(p)?)
    }
}

impl AddFields for TenantAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let t = Tenant {
            name: self.name.clone().unwrap_or_else(|| id.clone()),
            id,
            contact: self.contact.clone(),
            quotas: Default::default(),
        };
        Ok(serde_json::to_value(t)?)
    }
}

fn parse_origin(spec: &str) -> anyhow::Result<Origin> {
    let mut parts = spec.split(',');
    let address = parts.next().unwrap_or_default().to_owned();
    let mut origin = Origin {
        address,
        weight: 1,
        backup: false,
        tls: false,
        host_header: None,
        tls_skip_verify: false,
    };
    for opt in parts {
        match opt.split_once('=') {
            None if opt == "backup" => origin.backup = true,
            None if opt == "tls" => origin.tls = true,
            None if opt == "tls-skip-verify" => {
                origin.tls = true;
                origin.tls_skip_verify = true;
            }
            Some(("weight", w)) => {
                origin.weight = w
                    .parse()
                    .with_context(|| format!("origin weight `{w}` is not a number"))?;
            }
            Some(("host", h)) => origin.host_header = Some(h.to_owned()),
            _ => bail!(
                "unknown origin option `{opt}`: use backup, tls, tls-skip-verify, weight=N or host=NAME"
            ),
        }
    }
    Ok(origin)
}

impl AddFields for ServiceAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let mut steering = SteeringPolicy::default();
        if let Some(ttl) = self.ttl {
            steering.ttl = ttl;
        }
        if let Some(n) = self.answer_count {
            steering.answer_count = n;
        }
        let s = Service {
            id,
            tenant: need(&self.tenant, "tenant")?.clone(),
            hostnames: self.hostnames.clone(),
            origins: self
                .origins
                .iter()
                .map(|o| parse_origin(o))
                .collect::<anyhow::Result<_>>()?,
            cache_rules: Vec::new(),
            steering,
            tls: None,
            targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
            forward_targeted_cache_control: false,
            origin_ca_pem: self.origin_ca.as_deref().map(read_input).transpose()?,
            defence: Default::default(),
        };
        Ok(serde_json::to_value(s)?)
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads a resource from a JSON or TOML file.
pub fn read_resource(path: &Path) -> anyhow::Result<Value> {
    let text = read_input(path)?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    if is_toml {
        let v: toml::Value = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        return Ok(serde_json::to_value(v)?);
    }
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not valid JSON (use a .toml name for TOML)",
            path.display()
        )
    })
}

/// Adds context that says what to do next to API errors.
pub fn explain(e: ClientError) -> anyhow::Error {
    let hint = match (&e, e.status()) {
        (_, Some(401)) => Some("check --token / LINGJING_TOKEN"),
        (_, Some(403)) => Some("this needs the operator token"),
        _ => None,
    };
    let mut msg = e.to_string();
    if let ClientError::Api { field: Some(f), .. } = &e
        && !msg.starts_with(f.as_str())
    {
        msg = format!("{f}: {msg}");
    }
    match hint {
        Some(h) => anyhow::anyhow!("{msg} ({h})"),
        None => anyhow::anyhow!(msg),
    }
}

pub async fn resource<A: AddFields>(
    global: &Global,
    plural: &str,
    cmd: ResourceCmd<A>,
) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        ResourceCmd::List => {
            let items: Value = c.get(&format!("/v1/{plural}")).await.map_err(explain)?;
            print_list(plural, &items, global.json);
        }
        ResourceCmd::Show { id } => {
            let item: Value = c
                .get(&format!("/v1/{plural}/{id}"))
                .await
                .map_err(explain)?;
            print_one(&item, global.json);
        }
        ResourceCmd::Add(AddArgs { file, id, fields }) => {
            let body = match (file, id) {
                (Some(f), _) => read_resource(&f)?,
                (None, Some(id)) => fields.to_resource(id)?,
                (None, None) => bail!("give an id, or a file with -f"),
            };
            let created: Value = c
                .post(&format!("/v1/{plural}"), &body)
                .await
                .map_err(explain)?;
            print_one(&created, global.json);
        }
        ResourceCmd::Rm { id } => {
            c.delete(&format!("/v1/{plural}/{id}"))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

pub async fn line(global: &Global, cmd: LineCmd) -> anyhow::Result<()> {
    match cmd {
        LineCmd::Resource(r) => resource(global, "lines", r).await,
        LineCmd::Import { file, no_create } => {
            let text = read_input(&file)?;
            let c = client(global)?;
            let summary: Value = c
                .post_text(
                    &format!("/v1/lines/import?create_lines={}", !no_create),
                    text,
                )
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&summary, true);
            } else {
                for (line, n) in summary["lines"].as_object().into_iter().flatten() {
                    println!("{line}: {n} prefixes");
                }
                for l in summary["created_lines"].as_array().into_iter().flatten() {
                    println!("created line {}", l.as_str().unwrap_or_default());
                }
            }
            Ok(())
        }
        LineCmd::Prefixes { id } => {
            let c = client(global)?;
            let items: Value = c
                .get(&format!("/v1/lines/{id}/prefixes"))
                .await
                .map_err(explain)?;
            print_list("prefixes", &items, global.json);
            Ok(())
        }
    }
}

pub async fn pool(global: &Global, cmd: PoolCmd) -> anyhow::Result<()> {
    match cmd {
        PoolCmd::Resource(r) => resource(global, "pools", r).await,
        PoolCmd::Allocate {
            pool,
            node,
            address,
        } => {
            let c = client(global)?;
            let mut body = json!({ "node": node });
            if let Some(a) = address {
                body["address"] = Value::String(a);
            }
            let a: Value = c
                .post(&format!("/v1/pools/{pool}/allocations"), &body)
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&a, true);
            } else {
                println!(
                    "{} -> {}",
                    a["address"].as_str().unwrap_or("?"),
                    a["node"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        PoolCmd::Release { pool, address } => {
            let c = client(global)?;
            c.delete(&format!("/v1/pools/{pool}/allocations/{address}"))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("released {address}");
            }
            Ok(())
        }
        PoolCmd::Allocations { pool } => {
            let c = client(global)?;
            let items: Value = c
                .get(&format!("/v1/pools/{pool}/allocations"))
                .await
                .map_err(explain)?;
            print_list("allocations", &items, global.json);
            Ok(())
        }
    }
}

pub async fn tenant(global: &Global, cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Resource(r) => resource(global, "tenants", r).await,
        TenantCmd::KeyCreate { tenant } => {
            let c = client(global)?;
            let key: Value = c
                .post(&format!("/v1/tenants/{tenant}/keys"), &json!({}))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&key, true);
            } else {
                println!("{}", key["secret"].as_str().unwrap_or_default());
                eprintln!(
                    "(key id {}; the secret is shown only now: keep it safe)",
                    key["id"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        TenantCmd::Keys { tenant } => {
            let c = client(global)?;
            let items: Value = c
                .get(&format!("/v1/tenants/{tenant}/keys"))
                .await
                .map_err(explain)?;
            print_list("keys", &items, global.json);
            Ok(())
        }
        TenantCmd::KeyRevoke { tenant, key } => {
            let c = client(global)?;
            c.delete(&format!("/v1/tenants/{tenant}/keys/{key}"))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("revoked {key}");
            }
            Ok(())
        }
        TenantCmd::S3KeyCreate { tenant } => {
            let c = client(global)?;
            let key: Value = c
                .post(&format!("/v1/tenants/{tenant}/s3-keys"), &json!({}))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&key, true);
            } else {
                println!(
                    "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}",
                    key["access_key"].as_str().unwrap_or_default(),
                    key["secret"].as_str().unwrap_or_default()
                );
                eprintln!("(the secret is shown only now: keep it safe)");
            }
            Ok(())
        }
        TenantCmd::S3Keys { tenant } => {
            let c = client(global)?;
            let items: Value = c
                .get(&format!("/v1/tenants/{tenant}/s3-keys"))
                .await
                .map_err(explain)?;
            print_list("S3 keys", &items, global.json);
            Ok(())
        }
        TenantCmd::S3KeyRevoke { tenant, access_key } => {
            let c = client(global)?;
            c.delete(&format!("/v1/tenants/{tenant}/s3-keys/{access_key}"))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("revoked {access_key}");
            }
            Ok(())
        }
    }
}

pub async fn service(global: &Global, cmd: ServiceCmd) -> anyhow::Result<()> {
    let (id, approve) = match cmd {
        ServiceCmd::Resource(r) => return resource(global, "services", r).await,
        ServiceCmd::Verify { id, approve } => (id, approve),
    };
    let c = client(global)?;
    let result: Value = c
        .post(
            &format!("/v1/services/{id}/verify"),
            &json!({ "approve": approve }),
        )
        .await
        .map_err(explain)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    let mut pending = 0;
    for h in result["hostnames"].as_array().into_iter().flatten() {
        let name = h["hostname"].as_str().unwrap_or_default();
        if h["state"] == "verified" {
            println!("{name}: verified");
        } else {
            pending += 1;
            println!(
                "{name}: pending: {}\n  publish: {} TXT \"{}\"",
                h["detail"].as_str().unwrap_or("not proven yet"),
                h["challenge_name"].as_str().unwrap_or_default(),
                h["challenge_value"].as_str().unwrap_or_default(),
            );
        }
    }
    if pending > 0 {
        bail!("{pending} hostname(s) of `{id}` still pending: they are not served until verified");
    }
    Ok(())
}

pub async fn node(global: &Global, cmd: NodeCmd) -> anyhow::Result<()> {
    let (id, drained) = match cmd {
        NodeCmd::Resource(r) => return resource(global, "nodes", r).await,
        NodeCmd::Drain { id } => (id, true),
        NodeCmd::Undrain { id } => (id, false),
        cmd @ (NodeCmd::JoinToken { .. } | NodeCmd::Revoke { .. }) => {
            return super::node_access::run(global, cmd).await;
        }
    };
    let c = client(global)?;
    let view: Value = c.get(&format!("/v1/nodes/{id}")).await.map_err(explain)?;
    let mut node = node_spec(view)?;
    node.drained = drained;
    let _: Value = c
        .put(&format!("/v1/nodes/{id}"), &node)
        .await
        .map_err(explain)?;
    if !global.json {
        println!(
            "{id} {}",
            if drained {
                "drained: DNS stops handing it out"
            } else {
                "undrained: back in DNS answers"
            }
        );
    }
    Ok(())
}

pub async fn sla(global: &Global, cmd: SlaCmd) -> anyhow::Result<()> {
    let SlaCmd::Report {
        target,
        from,
        to,
        all,
    } = cmd;
    let mut query = format!("/v1/sla?target={target}");
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push_str(&format!("&{k}={v}"));
        }
    }
    let c = client(global)?;
    let report: Value = c.get(&query).await.map_err(explain)?;
    if global.json {
        print_one(&report, true);
        return Ok(());
    }
    println!(
        "availability from {} to {}, target {}%",
        report["from"].as_str().unwrap_or("?"),
        report["to"].as_str().unwrap_or("?"),
        target
    );
    let key = if all { "entries" } else { "below_target" };
    if !all && report[key].as_array().is_some_and(Vec::is_empty) {
        println!("everything met the target");
        return Ok(());
    }
    print_list("sla", &report[key], false);
    Ok(())
}

/// The node resource inside an API node view (which adds `addresses` and `status`).
pub fn node_spec(mut view: Value) -> anyhow::Result<Node> {
    if let Some(o) = view.as_object_mut() {
        o.remove("addresses");
        o.remove("status");
    }
    Ok(serde_json::from_value(view)?)
}
