//! `lingjing purge`: issue a purge and wait, with a progress bar, until every edge node has
//! applied it.

use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::resources::explain;
use crate::args::{Global, PurgeArgs, PurgeCmd};
use crate::context::client;
use crate::output::{print_list, print_one};

/// How long `purge` waits for every node before giving up (the purge stays in force).
const WAIT: Duration = Duration::from_secs(60);

pub async fn run(global: &Global, cmd: PurgeCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    let (kind, args) = match cmd {
        PurgeCmd::Url(a) => ("url", a),
        PurgeCmd::Prefix(a) => ("prefix", a),
        PurgeCmd::Tag(a) => ("tag", a),
        PurgeCmd::Show { id } => {
            let p: Value = c.get(&format!("/v1/purges/{id}")).await.map_err(explain)?;
            print_one(&p, global.json);
            return Ok(());
        }
        PurgeCmd::List => {
            let items: Value = c.get("/v1/purges").await.map_err(explain)?;
            print_list("purges", &items, global.json);
            return Ok(());
        }
    };
    let PurgeArgs {
        targets,
        service,
        soft,
        no_wait,
    } = args;
    let body = json!({
        "kind": kind,
        "targets": targets,
        "service": service,
        "mode": if soft { "soft" } else { "hard" },
    });
    let issued: Value = c.post("/v1/purges", &body).await.map_err(explain)?;
    let id = issued["id"].as_u64().unwrap_or_default();
    let count = |v: &Value, k: &str| v[k].as_array().map_or(0, Vec::len) as u64;
    let total = count(&issued, "applied") + count(&issued, "pending");
    if no_wait || total == 0 {
        if global.json {
            print_one(&issued, true);
        } else {
            println!(
                "purge {id} issued; {} of {total} nodes have applied it",
                count(&issued, "applied")
            );
        }
        return Ok(());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} purge {msg} [{bar:30}] {pos}/{len} nodes")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(id.to_string());
    let started = Instant::now();
    let mut last = issued;
    loop {
        bar.set_position(count(&last, "applied"));
        if count(&last, "pending") == 0 {
            break;
        }
        if started.elapsed() > WAIT {
            bar.abandon();
            let pending: Vec<&str> = last["pending"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            bail!(
                "purge {id} is issued and stays in force, but {} have not applied it yet (down or unreachable?); check with `lingjing purge show {id}`",
                pending.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = c.get(&format!("/v1/purges/{id}")).await.map_err(explain)?;
    }
    bar.finish_and_clear();
    if global.json {
        print_one(&last, true);
    } else {
        println!("purge {id} applied on all {total} nodes");
    }
    Ok(())
}
