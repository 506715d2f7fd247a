//! `lingjing sensor|receiver|silence|alert`: IDC monitoring's inventory (sensors, where
//! alerts go, silences) through the generic resource commands, a sensor's series, and
//! the alert list with acknowledgement.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::args::{AlertCmd, Global, ReceiverAdd, SensorAdd, SensorCmd, SilenceAdd};
use crate::commands::inspect::{encode, query};
use crate::commands::resources::{AddFields, explain, resource};
use crate::context::client;
use crate::output::{print_one, table};

fn need(v: &Option<String>, flag: &str) -> anyhow::Result<String> {
    v.clone()
        .with_context(|| format!("--{flag} is required (or give the whole resource with -f FILE)"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl AddFields for SensorAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let mut s = json!({
            "id": id,
            "site": need(&self.site, "site")?,
            "room": need(&self.room, "room")?,
            "kind": need(&self.kind, "kind")?,
            "device": need(&self.device, "device")?,
            "interval_s": self.interval_s,
        });
        for (k, v) in [
            ("cabinet", self.cabinet.clone().map(Value::from)),
            ("rack_unit", self.rack_unit.map(Value::from)),
            ("contract_watts", self.contract_watts.map(Value::from)),
            ("tenant", self.tenant.clone().map(Value::from)),
        ] {
            if let Some(v) = v {
                s[k] = v;
            }
        }
        Ok(s)
    }
}

fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

impl AddFields for ReceiverAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        let mut r = json!({
            "id": id,
            "sites": self.sites,
            "tenants": self.tenants,
            "min_severity": self.min_severity,
        });
        match (&self.url, &self.email_relay) {
            (Some(url), _) => {
                let path = self
                    .secret_file
                    .as_ref()
                    .context("--secret-file is required: the secret that signs the webhooks")?;
                r["url"] = json!(url);
                r["secret"] = json!(read_secret(path, "secret")?);
            }
            (None, Some(relay)) => {
                let mut email = json!({
                    "relay": relay,
                    "from": need(&self.email_from, "email-from")?,
                    "to": self.email_to,
                    "starttls": self.starttls,
                });
                if let Some(user) = &self.email_username {
                    let path = self
                        .email_password_file
                        .as_ref()
                        .context("--email-password-file is required with --email-username")?;
                    email["username"] = json!(user);
                    email["password"] = json!(read_secret(path, "password")?);
                }
                r["email"] = email;
            }
            (None, None) => {
                bail!(
                    "give --url URL --secret-file FILE (a webhook) or --email-relay smtp://HOST --email-from ADDRESS --email-to ADDRESS (email)"
                )
            }
        }
        Ok(r)
    }
}

impl AddFields for SilenceAdd {
    fn to_resource(&self, id: String) -> anyhow::Result<Value> {
        if self.matchers.is_empty() {
            bail!("--match LABEL=VALUE is required (a silence of everything is refused)");
        }
        let matchers = self
            .matchers
            .iter()
            .map(|m| {
                let (label, value) = m
                    .split_once('=')
                    .with_context(|| format!("--match `{m}`: expected LABEL=VALUE"))?;
                let (value, prefix) = match value.strip_suffix('*') {
                    Some(v) => (v, true),
                    None => (value, false),
                };
                Ok(json!({"label": label, "value": value, "prefix": prefix}))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let now = now_ms();
        Ok(json!({
            "id": id,
            "matchers": matchers,
            "starts_ms": now,
            "ends_ms": now + i64::from(self.duration) * 1000,
            "by": need(&self.by, "by")?,
            "comment": self.comment,
        }))
    }
}

pub async fn sensor(global: &Global, cmd: SensorCmd) -> anyhow::Result<()> {
    match cmd {
        SensorCmd::Resource(r) => resource(global, "sensors", r).await,
        SensorCmd::Readings { id, since, step } => {
            let c = client(global)?;
            let to = now_ms();
            let from = (to - i64::from(since) * 1000).to_string();
            let (to_s, step_s) = (to.to_string(), step.to_string());
            let series: Value = c
                .get(&query(
                    &format!("/v1/sensors/{}/readings", encode(&id)),
                    &[
                        ("from", Some(&from)),
                        ("to", Some(&to_s)),
                        ("step", Some(&step_s)),
                    ],
                ))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&series, true);
                return Ok(());
            }
            let unit = series["unit"].as_str().unwrap_or("");
            let mut t = table();
            t.set_header(["AT (ms)", "MIN", "MAX", "MEAN", "LAST", "COUNT"]);
            for p in series["points"].as_array().into_iter().flatten() {
                let f = |k: &str| {
                    p[k].as_f64()
                        .map(|v| format!("{v:.2} {unit}"))
                        .unwrap_or_default()
                };
                t.add_row([
                    p["at_ms"].to_string(),
                    f("min"),
                    f("max"),
                    f("mean"),
                    f("last"),
                    p["count"].to_string(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

pub async fn alert(global: &Global, cmd: AlertCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        AlertCmd::List { state, site } => {
            let all: Value = c
                .get(&query(
                    "/v1/alerts",
                    &[("state", state.as_deref()), ("site", site.as_deref())],
                ))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&all, true);
                return Ok(());
            }
            let mut t = table();
            t.set_header([
                "KEY",
                "SITE",
                "SEVERITY",
                "STATE",
                "SINCE (ms)",
                "VALUE",
                "ACKED BY",
            ]);
            for a in all.as_array().into_iter().flatten() {
                let s = |k: &str| a[k].as_str().unwrap_or("").to_owned();
                t.add_row([
                    s("key"),
                    s("site"),
                    s("severity"),
                    s("state"),
                    a["since_ms"].to_string(),
                    a["value"]
                        .as_f64()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    s("acked_by"),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        AlertCmd::Ack { key, by } => {
            let done: Value = c
                .post("/v1/alerts/ack", &json!({"key": key, "by": by}))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&done, true);
            } else {
                println!("acknowledged {key}: it is not escalated");
            }
            Ok(())
        }
    }
}
