//! `lingjing defence`: traffic defence rules (add, list, show, remove) and the attacks edge
//! nodes detected.

use anyhow::bail;
use serde_json::{Value, json};

use super::resources::explain;
use crate::args::{DefenceCmd, DefenceRuleAdd, DefenceRuleCmd, Global};
use crate::context::client;
use crate::output::{print_list, print_one};

pub async fn run(global: &Global, cmd: DefenceCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        DefenceCmd::Rule(DefenceRuleCmd::Add(add)) => {
            let body = rule_body(*add)?;
            let rule: Value = c.post("/v1/defence/rules", &body).await.map_err(explain)?;
            if global.json {
                print_one(&rule, true);
            } else {
                println!(
                    "rule {} added; every edge node applies it with its next snapshot",
                    rule["id"].as_str().unwrap_or("?")
                );
            }
        }
        DefenceCmd::Rule(DefenceRuleCmd::List) => {
            let rules: Value = c.get("/v1/defence/rules").await.map_err(explain)?;
            print_list("defence-rules", &rules, global.json);
        }
        DefenceCmd::Rule(DefenceRuleCmd::Show { id }) => {
            let rule: Value = c
                .get(&format!("/v1/defence/rules/{id}"))
                .await
                .map_err(explain)?;
            print_one(&rule, global.json);
        }
        DefenceCmd::Rule(DefenceRuleCmd::Rm { id }) => {
            c.delete(&format!("/v1/defence/rules/{id}"))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("rule {id} removed");
            }
        }
        DefenceCmd::Events { service, limit } => {
            let mut path = format!("/v1/defence/events?limit={limit}");
            if let Some(s) = service {
                path.push_str(&format!("&service={s}"));
            }
            let events: Value = c.get(&path).await.map_err(explain)?;
            print_list("defence-events", &events, global.json);
        }
    }
    Ok(())
}

/// The API's rule from the command line's flags.
fn rule_body(add: DefenceRuleAdd) -> anyhow::Result<Value> {
    let header = match &add.header {
        None => Value::Null,
        Some(h) => match h.split_once(':') {
            Some((name, contains)) => json!({ "name": name.trim(), "contains": contains.trim() }),
            None => bail!("--header takes NAME:TEXT, e.g. `X-Bot:yes`"),
        },
    };
    let mut matches = serde_json::Map::new();
    if !add.sources.is_empty() {
        matches.insert("sources".into(), json!(add.sources));
    }
    if !add.methods.is_empty() {
        let methods: Vec<String> = add.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        matches.insert("methods".into(), json!(methods));
    }
    if let Some(p) = add.path {
        matches.insert("path".into(), json!(p));
    }
    if !header.is_null() {
        matches.insert("header".into(), header);
    }
    if let Some(ua) = add.user_agent {
        matches.insert("user_agent".into(), json!(ua));
    }
    let mut body = json!({
        "action": add.action,
        "match": matches,
        "mode": add.mode,
    });
    for (k, v) in [
        ("service", add.service.map(Value::from)),
        ("rate", add.rate.map(Value::from)),
        ("ttl_seconds", add.ttl.map(Value::from)),
        ("note", add.note.map(Value::from)),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    Ok(body)
}
