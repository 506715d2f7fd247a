//! `lingjing rollout create|list|show|pause|resume|abort`: fleet rollouts of a model
//! version to the edge AI nodes. `show` prints the state, the group being rolled out,
//! each group's committed count as a bar and a table of the nodes (stage, version, reason;
//! silent nodes as pending-offline); `--watch` follows a rollout with a progress bar per
//! group, refreshed every second until it is no longer running, then prints that view.

use std::time::Duration;

use anyhow::bail;
use comfy_table::Cell;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::resources::explain;
use crate::args::{Global, RolloutCmd, RolloutCreate};
use crate::context::client;
use crate::output::{print_one, table};

pub async fn run(global: &Global, cmd: RolloutCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        RolloutCmd::Create(args) => create(global, &c, args).await,
        RolloutCmd::List => {
            let all: Value = c.get("/v1/rollouts").await.map_err(explain)?;
            if global.json {
                print_one(&all, true);
                return Ok(());
            }
            let mut t = table();
            t.set_header([
                "ID",
                "MODEL",
                "VERSION",
                "STATE",
                "GROUP",
                "COMMITTED",
                "CREATED",
            ]);
            for r in all.as_array().into_iter().flatten() {
                let (committed, total) = totals(r);
                t.add_row([
                    Cell::new(text(&r["id"])),
                    Cell::new(text(&r["model"])),
                    Cell::new(&r["version"]),
                    Cell::new(state_word(r)),
                    Cell::new(current_group(r)),
                    Cell::new(format!("{committed}/{total}")),
                    Cell::new(text(&r["created_at"])),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        RolloutCmd::Show { id, watch } => {
            if watch {
                return follow(global, &c, &id).await;
            }
            let st: Value = c
                .get(&format!("/v1/rollouts/{id}"))
                .await
                .map_err(explain)?;
            print_status(&st, global.json);
            Ok(())
        }
        RolloutCmd::Pause { id } => by_hand(global, &c, &id, "pause").await,
        RolloutCmd::Resume { id } => by_hand(global, &c, &id, "resume").await,
        RolloutCmd::Abort { id } => by_hand(global, &c, &id, "abort").await,
    }
}

async fn create(
    global: &Global,
    c: &lingjing_client::Client,
    args: RolloutCreate,
) -> anyhow::Result<()> {
    let mut body = json!({
        "model": args.model,
        "version": args.version,
        "canary": args.canary,
        "percents": args.percents,
        "sites": args.sites,
        "regions": args.regions,
        "success_percent": args.success_percent,
        "error_threshold": args.error_threshold,
        "node_deadline_s": args.deadline,
        "offline_after_s": args.offline_after,
    });
    let custom = args.probation_inferences.is_some()
        || args.probation_seconds.is_some()
        || args.probation_max_errors.is_some()
        || args.probation_max_p95_ms.is_some();
    if custom {
        let d = lingjing_model::aiot::Probation::default();
        body["probation"] = json!({
            "min_inferences": args.probation_inferences.unwrap_or(d.min_inferences),
            "min_seconds": args.probation_seconds.unwrap_or(d.min_seconds),
            "max_error_percent": args.probation_max_errors.unwrap_or(d.max_error_percent),
            "max_p95_ms": args.probation_max_p95_ms.unwrap_or(d.max_p95_ms),
        });
    }
    let made: Value = c.post("/v1/rollouts", &body).await.map_err(explain)?;
    let id = text(&made["id"]);
    if args.watch {
        if !global.json {
            println!("{}", summary(&made));
        }
        return follow(global, c, &id).await;
    }
    if global.json {
        print_one(&made, true);
    } else {
        println!("{}", summary(&made));
        println!("follow it with `lingjing rollout show {id} --watch`");
    }
    Ok(())
}

/// One line on a new rollout.
fn summary(st: &Value) -> String {
    let sizes: Vec<String> = groups(st).iter().map(|g| g["total"].to_string()).collect();
    let (_, total) = totals(st);
    format!(
        "rollout {} made: {} version {} to {total} nodes in {} groups ({})",
        text(&st["id"]),
        text(&st["model"]),
        st["version"],
        sizes.len(),
        sizes.join(", ")
    )
}

async fn by_hand(
    global: &Global,
    c: &lingjing_client::Client,
    id: &str,
    verb: &str,
) -> anyhow::Result<()> {
    let st: Value = c
        .post(&format!("/v1/rollouts/{id}/{verb}"), &json!({}))
        .await
        .map_err(explain)?;
    if global.json {
        print_one(&st, true);
        return Ok(());
    }
    println!("rollout {id} {}", state_word(&st));
    if verb == "abort" {
        let back = nodes(&st)
            .iter()
            .filter(|n| n["state"] != "not_started")
            .count();
        println!("{back} node(s) sent back to their previous version");
    }
    Ok(())
}

/// Follows rollout `id` every second until it is no longer running: a progress bar per
/// group (on a terminal), then the full view. Rolled back or aborted is an error.
async fn follow(global: &Global, c: &lingjing_client::Client, id: &str) -> anyhow::Result<()> {
    let bars = MultiProgress::new();
    let header = bars.add(ProgressBar::new_spinner());
    header.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let style = ProgressStyle::with_template("  {prefix:9} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut group_bars: Vec<ProgressBar> = Vec::new();
    let st = loop {
        let st: Value = c
            .get(&format!("/v1/rollouts/{id}"))
            .await
            .map_err(explain)?;
        header.set_message(headline(&st));
        header.tick();
        for (i, g) in groups(&st).iter().enumerate() {
            if group_bars.len() <= i {
                let bar = bars.add(ProgressBar::new(g["total"].as_u64().unwrap_or(0)));
                bar.set_style(style.clone());
                bar.set_prefix(format!("group {}", i + 1));
                group_bars.push(bar);
            }
            let bar = &group_bars[i];
            bar.set_position(g["committed"].as_u64().unwrap_or(0));
            bar.set_message(group_note(g));
        }
        if st["state"] != "running" {
            break st;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    bars.clear().ok();
    print_status(&st, global.json);
    match st["state"].as_str() {
        Some("rolled_back" | "aborted") => bail!(
            "rollout {id} {}: {}",
            state_word(&st),
            text(&st["progress"]["reason"])
        ),
        _ => Ok(()),
    }
}

fn groups(st: &Value) -> &[Value] {
    st["groups"].as_array().map_or(&[], Vec::as_slice)
}

fn nodes(st: &Value) -> &[Value] {
    st["nodes"].as_array().map_or(&[], Vec::as_slice)
}

/// Committed nodes and all nodes.
fn totals(st: &Value) -> (u64, u64) {
    groups(st).iter().fold((0, 0), |(c, t), g| {
        (
            c + g["committed"].as_u64().unwrap_or(0),
            t + g["total"].as_u64().unwrap_or(0),
        )
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The state in words.
fn state_word(st: &Value) -> String {
    match st["state"].as_str() {
        Some("running") => "running".into(),
        Some("paused") => "paused".into(),
        Some("succeeded") => "succeeded".into(),
        Some("rolled_back") => "rolled back".into(),
        Some("aborted") => "aborted".into(),
        Some("superseded") => "superseded".into(),
        _ => text(&st["state"]),
    }
}

/// The group being rolled out, 1-based, of all (`-` once it stopped).
fn current_group(st: &Value) -> String {
    let all = groups(st).len();
    match (st["state"].as_str(), st["progress"]["group"].as_u64()) {
        (Some("running" | "paused"), Some(g)) => format!("{}/{all}", (g as usize + 1).min(all)),
        _ => "-".into(),
    }
}

fn headline(st: &Value) -> String {
    let mut line = format!(
        "rollout {}: {} version {}, {}",
        text(&st["id"]),
        text(&st["model"]),
        st["version"],
        state_word(st)
    );
    if let Some(g) = st["progress"]["group"].as_u64()
        && matches!(st["state"].as_str(), Some("running" | "paused"))
    {
        line.push_str(&format!(" (group {} of {})", g + 1, groups(st).len()));
    }
    line
}

fn group_note(g: &Value) -> String {
    let mut notes = Vec::new();
    if g["started"] != true {
        notes.push("waiting".to_owned());
    }
    for (key, word) in [("failed", "failed"), ("pending_offline", "pending offline")] {
        let n = g[key].as_u64().unwrap_or(0);
        if n > 0 {
            notes.push(format!("{n} {word}"));
        }
    }
    notes.join(", ")
}

/// `[######....] 3/10`.
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

/// What the node last reported, in short: `v2 probation (12 inferences, 0 errors, p95 40 ms)`.
fn reported(report: &Value) -> String {
    if report.is_null() {
        return "-".into();
    }
    let mut s = format!("v{} {}", report["version"], text(&report["stage"]));
    let p = &report["probation"];
    if p.is_object() {
        s.push_str(&format!(
            " ({} inferences, {} errors, p95 {} ms)",
            p["inferences"], p["errors"], p["p95_ms"]
        ));
    }
    s
}

fn print_status(st: &Value, json: bool) {
    if json {
        print_one(st, true);
        return;
    }
    println!("{}", headline(st));
    let plan = &st["plan"];
    let p = &plan["probation"];
    println!(
        "plan: next group at {}% committed, roll back at {} failed, deadline {} s, offline after {} s; probation {} inferences or {} s, errors <= {}%, p95 <= {} ms",
        plan["success_percent"],
        plan["error_threshold"],
        plan["node_deadline_ms"].as_i64().unwrap_or(0) / 1000,
        plan["offline_after_ms"].as_i64().unwrap_or(0) / 1000,
        p["min_inferences"],
        p["min_seconds"],
        p["max_error_percent"],
        p["max_p95_ms"],
    );
    if let Some(reason) = st["progress"]["reason"].as_str() {
        println!("reason: {reason}");
    }
    println!();
    let mut t = table();
    t.set_header(["GROUP", "COMMITTED", "FAILED", "PENDING OFFLINE", ""]);
    for g in groups(st) {
        t.add_row([
            Cell::new(g["index"].as_u64().unwrap_or(0) + 1),
            Cell::new(bar(
                g["committed"].as_u64().unwrap_or(0),
                g["total"].as_u64().unwrap_or(0),
            )),
            Cell::new(&g["failed"]),
            Cell::new(&g["pending_offline"]),
            Cell::new(if g["started"] == true { "" } else { "waiting" }),
        ]);
    }
    println!("{t}");
    println!();
    let mut t = table();
    t.set_header([
        "NODE", "SITE", "GROUP", "STATE", "TARGET", "REPORTED", "REASON",
    ]);
    for n in nodes(st) {
        let target = match (n["target_version"].as_u64(), n["target_revision"].as_u64()) {
            (Some(0), Some(r)) => format!("nothing (revision {r})"),
            (Some(v), Some(r)) => format!("v{v} (revision {r})"),
            _ => "-".into(),
        };
        let reason = n["failure"]
            .as_str()
            .or_else(|| n["report"]["reason"].as_str())
            .unwrap_or("");
        t.add_row([
            Cell::new(text(&n["node"])),
            Cell::new(text(&n["site"])),
            Cell::new(n["group"].as_u64().unwrap_or(0) + 1),
            Cell::new(text(&n["state"]).replace('_', "-")),
            Cell::new(target),
            Cell::new(reported(&n["report"])),
            Cell::new(reason),
        ]);
    }
    println!("{t}");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command, parse_seconds};

    #[test]
    fn durations_and_flags_parse() {
        assert_eq!(parse_seconds("600"), Ok(600));
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("10m"), Ok(600));
        assert_eq!(parse_seconds("1h"), Ok(3600));
        assert!(parse_seconds("10x").is_err());
        assert!(parse_seconds("m").is_err());
        assert!(parse_seconds("9999999h").is_err());
        let cli = Cli::try_parse_from([
            "lingjing",
            "rollout",
            "create",
            "text-direction",
            "2",
            "--percents",
            "25,100",
            "--sites",
            "a,b",
            "--deadline",
            "2m",
            "--probation-seconds",
            "30",
        ])
        .expect("parses");
        let Command::Rollout(RolloutCmd::Create(c)) = cli.command else {
            panic!("not rollout create");
        };
        assert_eq!((c.model.as_str(), c.version), ("text-direction", 2));
        assert_eq!(c.percents, [25, 100]);
        assert_eq!(c.sites, ["a", "b"]);
        assert_eq!((c.deadline, c.offline_after, c.canary), (120, 30, 1));
        assert_eq!(c.probation_seconds, Some(30));
        assert!(c.regions.is_empty() && !c.watch);
    }

    #[test]
    fn the_view_in_words() {
        assert_eq!(bar(3, 10), "[######..............] 3/10");
        assert_eq!(bar(0, 0), "[....................] 0/0");
        let st = json!({
            "id": "3", "model": "m", "version": 2, "state": "running",
            "progress": {"group": 1},
            "groups": [{"total": 1, "committed": 1}, {"total": 4, "committed": 1}],
        });
        assert_eq!(current_group(&st), "2/2");
        assert_eq!(totals(&st), (2, 5));
        assert_eq!(
            headline(&st),
            "rollout 3: m version 2, running (group 2 of 2)"
        );
        let done = json!({"state": "rolled_back", "groups": []});
        assert_eq!(
            (current_group(&done), state_word(&done)),
            ("-".into(), "rolled back".into())
        );
    }
}
