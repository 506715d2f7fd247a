//! `lingjing inspect …`: road inspection. Devices (patrol cameras: `device add` registers
//! one and prints its credential once, for the camera to send as `Authorization: Bearer`
//! to its edge AI node) and crews (with the areas they work in), a tenant's inspection
//! policy (shown, or changed flag by flag), runs, defects (with their evidence frames),
//! work orders (with their history) and the actions people take on them, and the weekly
//! report. Times are printed as RFC 3339 in UTC; `--json` prints the API's answers as
//! they are (`device add`: the device with its `token`).

use anyhow::{Context, bail};
use comfy_table::Cell;
use lingjing_client::{Client, ClientError};
use lingjing_inspect::WorkOrderState;
use lingjing_inspect::classes::{canonical_code, class_name};
use serde_json::{Value, json};

use super::resources::explain;
use crate::args::{
    ByArg, CrewAdd, CrewCmd, DefectsArgs, DeviceAdd, DeviceCmd, Global, InspectCmd, OrdersArgs,
    PolicyArgs,
};
use crate::context::client;
use crate::output::{print_one, rfc3339_ms, table};

pub async fn run(global: &Global, cmd: InspectCmd) -> anyhow::Result<()> {
    let c = client(global)?;
    match cmd {
        InspectCmd::Device(cmd) => device(global, &c, cmd).await,
        InspectCmd::Crew(cmd) => crew(global, &c, cmd).await,
        InspectCmd::Policy(args) => policy(global, &c, args).await,
        InspectCmd::Runs { tenant } => runs(global, &c, tenant).await,
        InspectCmd::Run { id, tenant, device } => show_run(global, &c, &id, tenant, device).await,
        InspectCmd::Defects(args) => defects(global, &c, args).await,
        InspectCmd::Defect { id } => show_defect(global, &c, &id).await,
        InspectCmd::Orders(args) => orders(global, &c, args).await,
        InspectCmd::Order { id } => {
            let view: Value = c
                .get(&format!("/v1/work-orders/{}", encode(&id)))
                .await
                .map_err(explain)?;
            print_order(&view, global.json);
            Ok(())
        }
        InspectCmd::Dispatch { id, crew, by } => {
            act(
                global,
                &c,
                &id,
                json!({"action": "dispatch", "crew": crew}),
                by,
            )
            .await
        }
        InspectCmd::Start { id, by } => act(global, &c, &id, json!({"action": "start"}), by).await,
        InspectCmd::Fix {
            id,
            note,
            photo,
            by,
        } => {
            let body = json!({"action": "fix", "note": note, "photo": photo});
            act(global, &c, &id, body, by).await
        }
        InspectCmd::Reopen { id, reason, by } => {
            act(
                global,
                &c,
                &id,
                json!({"action": "reopen", "reason": reason}),
                by,
            )
            .await
        }
        InspectCmd::Cancel { id, reason, by } => {
            act(
                global,
                &c,
                &id,
                json!({"action": "cancel", "reason": reason}),
                by,
            )
            .await
        }
        InspectCmd::Duplicate { id, of, by } => {
            act(
                global,
                &c,
                &id,
                json!({"action": "duplicate", "of": of}),
                by,
            )
            .await
        }
        InspectCmd::Report { tenant, from, to } => report(global, &c, tenant, from, to).await,
    }
}

// Devices and crews.

async fn device(global: &Global, c: &Client, cmd: DeviceCmd) -> anyhow::Result<()> {
    match cmd {
        DeviceCmd::Add(args) => add_device(global, c, args).await,
        DeviceCmd::List { tenant } => {
            let all: Value = c.get("/v1/devices").await.map_err(explain)?;
            let all = of_tenant(all, tenant.as_deref());
            if global.json {
                print_one(&all, true);
                return Ok(());
            }
            let mut t = table();
            t.set_header(["ID", "TENANT", "NAME", "SLOT", "DETECTS", "HAS TOKEN"]);
            for d in items(&all) {
                t.add_row([
                    Cell::new(text(&d["id"])),
                    Cell::new(text(&d["tenant"])),
                    Cell::new(text(&d["name"])),
                    Cell::new(text(&d["slot"])),
                    Cell::new(rules(&d["detects"])),
                    Cell::new(yes_no(&d["has_token"])),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        DeviceCmd::Show { id } => {
            let d: Value = c
                .get(&format!("/v1/devices/{}", encode(&id)))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&d, true);
                return Ok(());
            }
            fields(&[
                ("id", text(&d["id"])),
                ("tenant", text(&d["tenant"])),
                ("name", text(&d["name"])),
                ("slot", text(&d["slot"])),
                ("detects", rules(&d["detects"])),
                ("has token", yes_no(&d["has_token"])),
            ]);
            Ok(())
        }
        DeviceCmd::Token { id } => {
            let t: Value = c
                .post(&format!("/v1/devices/{}/token", encode(&id)), &json!({}))
                .await
                .map_err(explain)?;
            if global.json {
                print_one(&t, true);
            } else {
                print_token(&id, &t);
            }
            Ok(())
        }
        DeviceCmd::Remove { id } => {
            c.delete(&format!("/v1/devices/{}", encode(&id)))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("removed device {id}: its frames are refused from now on");
            }
            Ok(())
        }
    }
}

async fn add_device(global: &Global, c: &Client, args: DeviceAdd) -> anyhow::Result<()> {
    let detects = args
        .detects
        .iter()
        .map(|d| parse_detect(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = json!({
        "id": args.id,
        "tenant": args.tenant,
        "name": args.name,
        "slot": args.slot,
        "detects": detects,
    });
    let mut made: Value = c.post("/v1/devices", &body).await.map_err(explain)?;
    let token: Value = c
        .post(&format!("/v1/devices/{}/token", encode(&args.id)), &json!({}))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "device {} was added but has no credential yet ({}): issue one with `lingjing inspect device token {}`",
                args.id,
                explain(e),
                args.id
            )
        })?;
    if global.json {
        made["token"] = token["token"].clone();
        made["has_token"] = Value::Bool(true);
        print_one(&made, true);
        return Ok(());
    }
    println!(
        "added device {} of tenant {}: slot {}, {}",
        args.id,
        text(&made["tenant"]),
        text(&made["slot"]),
        rules(&made["detects"])
    );
    print_token(&args.id, &token);
    Ok(())
}

/// The credential, and what to do with it.
fn print_token(id: &str, t: &Value) {
    println!("token: {}", text(&t["token"]));
    println!(
        "give it to the camera: it sends `Authorization: Bearer <token>` with its frames to the edge AI node's `POST /v1/patrol/frames`. It is shown only now (a new one: `lingjing inspect device token {id}`, which replaces it)."
    );
}

/// `LABEL=CLASS[@MIN_SCORE]` as a detect rule (a known class in its own spelling: `d40` is
/// `D40`).
fn parse_detect(spec: &str) -> anyhow::Result<Value> {
    let hint = || {
        format!(
            "--detect `{spec}`: give LABEL=CLASS or LABEL=CLASS@MIN_SCORE, e.g. pothole=D40@0.6"
        )
    };
    let (label, rest) = spec.rsplit_once('=').with_context(hint)?;
    let (class, score) = match rest.split_once('@') {
        Some((class, score)) => (class, Some(score)),
        None => (rest, None),
    };
    if label.is_empty() || class.is_empty() {
        bail!(hint());
    }
    let mut rule =
        json!({"label": label, "class": lingjing_inspect::classes::canonical_code(class)});
    if let Some(score) = score {
        let s: f64 = score
            .parse()
            .ok()
            .filter(|s| (0.0..=1.0).contains(s))
            .with_context(|| format!("--detect `{spec}`: the score `{score}` must be 0 to 1"))?;
        rule["min_score"] = json!(s);
    }
    Ok(rule)
}

/// `SOUTH,WEST,NORTH,EAST` as an area (the API checks the box).
fn parse_area(spec: &str) -> anyhow::Result<Value> {
    let hint = || {
        format!(
            "--area `{spec}`: give SOUTH,WEST,NORTH,EAST in degrees, e.g. 31.50,120.20,31.70,120.40"
        )
    };
    let n: Vec<f64> = spec
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|n: &Vec<f64>| n.len() == 4 && n.iter().all(|x| x.is_finite()))
        .with_context(hint)?;
    Ok(json!({"south": n[0], "west": n[1], "north": n[2], "east": n[3]}))
}

async fn crew(global: &Global, c: &Client, cmd: CrewCmd) -> anyhow::Result<()> {
    match cmd {
        CrewCmd::Add(args) => add_crew(global, c, args).await,
        CrewCmd::List { tenant } => {
            let all: Value = c.get("/v1/crews").await.map_err(explain)?;
            let all = of_tenant(all, tenant.as_deref());
            if global.json {
                print_one(&all, true);
                return Ok(());
            }
            let mut t = table();
            t.set_header(["ID", "TENANT", "NAME", "CAPACITY", "AREAS"]);
            for w in items(&all) {
                t.add_row([
                    Cell::new(text(&w["id"])),
                    Cell::new(text(&w["tenant"])),
                    Cell::new(text(&w["name"])),
                    Cell::new(text(&w["capacity"])),
                    Cell::new(areas(&w["areas"])),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        CrewCmd::Show { id } => {
            let w: Value = c
                .get(&format!("/v1/crews/{}", encode(&id)))
                .await
                .map_err(explain)?;
            print_crew(&w, global.json);
            Ok(())
        }
        CrewCmd::Remove { id } => {
            c.delete(&format!("/v1/crews/{}", encode(&id)))
                .await
                .map_err(explain)?;
            if !global.json {
                println!("removed crew {id}");
            }
            Ok(())
        }
    }
}

async fn add_crew(global: &Global, c: &Client, args: CrewAdd) -> anyhow::Result<()> {
    let areas = args
        .areas
        .iter()
        .map(|a| parse_area(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut body = json!({
        "id": args.id,
        "tenant": args.tenant,
        "name": args.name,
        "areas": areas,
    });
    if let Some(n) = args.capacity {
        body["capacity"] = json!(n);
    }
    let made: Value = c.post("/v1/crews", &body).await.map_err(explain)?;
    if !global.json {
        println!("added crew {}", args.id);
    }
    print_crew(&made, global.json);
    Ok(())
}

fn print_crew(w: &Value, json: bool) {
    if json {
        print_one(w, true);
        return;
    }
    fields(&[
        ("id", text(&w["id"])),
        ("tenant", text(&w["tenant"])),
        ("name", text(&w["name"])),
        ("capacity", text(&w["capacity"])),
        ("areas", areas(&w["areas"])),
    ]);
}

// The policy.

async fn policy(global: &Global, c: &Client, args: PolicyArgs) -> anyhow::Result<()> {
    let path = format!("/v1/tenants/{}/inspect-policy", encode(&args.tenant));
    let mut p: Value = c.get(&path).await.map_err(explain)?;
    let changes = [
        ("merge_metres", args.merge_metres.map(|v| json!(v))),
        ("open_severity", args.open_severity.map(|v| json!(v))),
        ("seen_metres", args.seen_metres.map(|v| json!(v))),
        ("verify_frames", args.verify_frames.map(|v| json!(v))),
        (
            "evidence_bucket",
            args.evidence_bucket
                .map(|b| if b.is_empty() { Value::Null } else { json!(b) }),
        ),
    ];
    let changed = changes.iter().any(|(_, v)| v.is_some());
    for (key, value) in changes {
        if let Some(v) = value {
            p[key] = v;
        }
    }
    if changed {
        p = c.put(&path, &p).await.map_err(explain)?;
    }
    if global.json {
        print_one(&p, true);
        return Ok(());
    }
    println!(
        "inspection policy of tenant {}{}:",
        args.tenant,
        if changed { " (changed)" } else { "" }
    );
    fields(&[
        (
            "merge metres",
            format!(
                "{} (detections of a class closer than this are one defect)",
                text(&p["merge_metres"])
            ),
        ),
        (
            "open severity",
            format!(
                "{} (a defect opens a work order from this severity)",
                text(&p["open_severity"])
            ),
        ),
        (
            "seen metres",
            format!(
                "{} (a frame this close to a defect has seen its place)",
                text(&p["seen_metres"])
            ),
        ),
        (
            "verify frames",
            format!(
                "{} (clear frames that close a work order being verified)",
                text(&p["verify_frames"])
            ),
        ),
        (
            "evidence bucket",
            format!(
                "{} (where evidence images are kept; -: the control plane's database)",
                text(&p["evidence_bucket"])
            ),
        ),
    ]);
    Ok(())
}

// Runs.

async fn runs(global: &Global, c: &Client, tenant: Option<String>) -> anyhow::Result<()> {
    let all: Value = c
        .get(&query("/v1/inspect/runs", &[("tenant", tenant.as_deref())]))
        .await
        .map_err(explain)?;
    if global.json {
        print_one(&all, true);
        return Ok(());
    }
    let mut t = table();
    t.set_header([
        "ID",
        "TENANT",
        "DEVICE",
        "STARTED",
        "FRAMES",
        "DETECTIONS",
        "KM",
    ]);
    for r in items(&all) {
        t.add_row([
            Cell::new(text(&r["id"])),
            Cell::new(text(&r["tenant"])),
            Cell::new(text(&r["device"])),
            Cell::new(time(&r["started_ms"])),
            Cell::new(text(&r["frames"])),
            Cell::new(text(&r["detections"])),
            Cell::new(km(&r["length_m"])),
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn show_run(
    global: &Global,
    c: &Client,
    id: &str,
    tenant: Option<String>,
    device: Option<String>,
) -> anyhow::Result<()> {
    let path = query(
        &format!("/v1/inspect/runs/{}", encode(id)),
        &[("tenant", tenant.as_deref()), ("device", device.as_deref())],
    );
    let r: Value = c
        .get(&path)
        .await
        .map_err(|e| per_tenant(e, &tenant, "runs are named per tenant"))?;
    if global.json {
        print_one(&r, true);
        return Ok(());
    }
    let points = r["path"].as_array().map_or(0, Vec::len);
    fields(&[
        ("id", text(&r["id"])),
        ("tenant", text(&r["tenant"])),
        ("device", text(&r["device"])),
        ("started", time(&r["started_ms"])),
        ("last frame", time(&r["last_ms"])),
        ("frames", text(&r["frames"])),
        ("detections", text(&r["detections"])),
        ("km", km(&r["length_m"])),
        ("last position", position(&r["last_lat"], &r["last_lon"])),
        ("path points", points.to_string()),
    ]);
    Ok(())
}

// Defects.

async fn defects(global: &Global, c: &Client, args: DefectsArgs) -> anyhow::Result<()> {
    let limit = args.limit.map(|n| n.to_string());
    let class_filter = args.class.as_deref().map(canonical_code);
    let path = query(
        "/v1/defects",
        &[
            ("tenant", args.tenant.as_deref()),
            ("state", args.state.as_deref()),
            ("class", class_filter.as_deref()),
            ("limit", limit.as_deref()),
        ],
    );
    let (all, total) = list_with_total(c, &path).await?;
    if global.json {
        print_one(&all, true);
        return Ok(());
    }
    let mut t = table();
    t.set_header([
        "ID",
        "CLASS",
        "STATE",
        "LAT",
        "LON",
        "SIGHTINGS",
        "SEVERITY",
        "FIRST SEEN",
        "LAST SEEN",
    ]);
    for d in items(&all) {
        t.add_row([
            Cell::new(text(&d["id"])),
            Cell::new(class(&d["class"])),
            Cell::new(text(&d["state"])),
            Cell::new(degrees(&d["lat"])),
            Cell::new(degrees(&d["lon"])),
            Cell::new(text(&d["sightings"])),
            Cell::new(text(&d["severity"])),
            Cell::new(time(&d["first_seen_ms"])),
            Cell::new(time(&d["last_seen_ms"])),
        ]);
    }
    println!("{t}");
    more(items(&all).len(), total);
    Ok(())
}

async fn show_defect(global: &Global, c: &Client, id: &str) -> anyhow::Result<()> {
    let d: Value = c
        .get(&format!("/v1/defects/{}", encode(id)))
        .await
        .map_err(explain)?;
    if global.json {
        print_one(&d, true);
        return Ok(());
    }
    let order = &d["work_order"];
    let order_line = if order.is_object() {
        let mut s = format!("{} ({}", text(&order["id"]), text(&order["state"]));
        if let Some(crew) = order["crew"].as_str() {
            s.push_str(&format!(", crew {crew}"));
        }
        if order["due_ms"].is_i64() {
            s.push_str(&format!(", due {}", time(&order["due_ms"])));
        }
        s.push(')');
        s
    } else {
        "none".into()
    };
    fields(&[
        ("id", text(&d["id"])),
        ("tenant", text(&d["tenant"])),
        (
            "class",
            format!("{} {}", text(&d["class"]), text(&d["name"])),
        ),
        ("state", text(&d["state"])),
        ("source", text(&d["source"])),
        ("position", position(&d["lat"], &d["lon"])),
        ("severity", text(&d["severity"])),
        ("sightings", text(&d["sightings"])),
        ("best score", score(&d["best_score"])),
        ("first seen", time(&d["first_seen_ms"])),
        ("last seen", time(&d["last_seen_ms"])),
        ("description", text(&d["description"])),
        ("work order", order_line),
    ]);
    let evidence = items(&d["evidence"]);
    println!();
    if evidence.is_empty() {
        println!("no evidence frames kept");
        return Ok(());
    }
    println!("evidence, best score first (images: GET the path with your token):");
    let mut t = table();
    t.set_header(["SCORE", "TAKEN", "DEVICE", "FRAME", "IMAGE"]);
    for e in evidence {
        let image = if e["has_image"] == true {
            format!(
                "/v1/defects/{}/evidence/{}/{}",
                encode(id),
                encode(&text(&e["stream"])),
                text(&e["seq"])
            )
        } else {
            "-".into()
        };
        t.add_row([
            Cell::new(score(&e["score"])),
            Cell::new(time(&e["taken_ms"])),
            Cell::new(text(&e["device"])),
            Cell::new(text(&e["frame"])),
            Cell::new(image),
        ]);
    }
    println!("{t}");
    Ok(())
}

// Work orders.

async fn orders(global: &Global, c: &Client, args: OrdersArgs) -> anyhow::Result<()> {
    let limit = args.limit.map(|n| n.to_string());
    let path = query(
        "/v1/work-orders",
        &[
            ("tenant", args.tenant.as_deref()),
            ("state", args.state.as_deref()),
            ("crew", args.crew.as_deref()),
            ("limit", limit.as_deref()),
        ],
    );
    let (all, total) = list_with_total(c, &path).await?;
    if global.json {
        print_one(&all, true);
        return Ok(());
    }
    let now = now_ms();
    let mut t = table();
    t.set_header(["ID", "DEFECT", "STATE", "CREW", "DUE", "OVERDUE"]);
    for o in items(&all) {
        t.add_row([
            Cell::new(text(&o["id"])),
            Cell::new(text(&o["defect"])),
            Cell::new(text(&o["state"])),
            Cell::new(text(&o["crew"])),
            Cell::new(time(&o["due_ms"])),
            Cell::new(if overdue(o, now) { "overdue" } else { "" }),
        ]);
    }
    println!("{t}");
    more(items(&all).len(), total);
    Ok(())
}

/// Whether an order's due time has passed while it is still to be fixed (as the API
/// decides it for one order).
fn overdue(o: &Value, now_ms: i64) -> bool {
    let Some(state) = o["state"]
        .as_str()
        .and_then(|s| s.parse::<WorkOrderState>().ok())
    else {
        return false;
    };
    !state.is_terminal()
        && !matches!(state, WorkOrderState::Fixed | WorkOrderState::Verifying)
        && o["due_ms"].as_i64().is_some_and(|due| due < now_ms)
}

fn print_order(o: &Value, json: bool) {
    if json {
        print_one(o, true);
        return;
    }
    let d = &o["defect_detail"];
    fields(&[
        ("id", text(&o["id"])),
        ("tenant", text(&o["tenant"])),
        (
            "defect",
            format!(
                "{}: {} at {}, severity {}",
                text(&o["defect"]),
                class(&d["class"]),
                position(&d["lat"], &d["lon"]),
                text(&d["severity"])
            ),
        ),
        ("state", text(&o["state"])),
        ("crew", text(&o["crew"])),
        ("due", time(&o["due_ms"])),
        ("overdue", yes_no(&o["overdue"])),
        ("opened", time(&o["opened_ms"])),
        ("updated", time(&o["updated_ms"])),
        ("fixed", time(&o["fixed_ms"])),
        ("closed", time(&o["closed_ms"])),
        ("verifying since", time(&o["verifying_since_ms"])),
        ("clear frames", text(&o["clear_frames"])),
        ("note", text(&o["note"])),
        ("photo", text(&o["photo"])),
    ]);
    println!();
    println!("history:");
    let mut t = table();
    t.set_header(["TIME", "WHO", "ACTION", "FROM → TO", "DETAIL"]);
    for e in items(&o["history"]) {
        t.add_row([
            Cell::new(time(&e["at_ms"])),
            Cell::new(text(&e["who"])),
            Cell::new(text(&e["action"])),
            Cell::new(format!("{} → {}", text(&e["from"]), text(&e["to"]))),
            Cell::new(text(&e["detail"])),
        ]);
    }
    println!("{t}");
}

async fn act(
    global: &Global,
    c: &Client,
    id: &str,
    mut body: Value,
    by: ByArg,
) -> anyhow::Result<()> {
    if let Some(by) = by.by {
        body["by"] = Value::String(by);
    }
    let view: Value = c
        .post(&format!("/v1/work-orders/{}/actions", encode(id)), &body)
        .await
        .map_err(explain)?;
    if global.json {
        print_one(&view, true);
        return Ok(());
    }
    // From the state this action found (the system may have moved it on since: a fix
    // goes on to verifying) to the state it is in now.
    let state = text(&view["state"]);
    let mine = items(&view["history"])
        .iter()
        .rev()
        .find(|e| e["action"] == body["action"]);
    let mut line = match mine {
        Some(e) if e["from"].is_string() => {
            format!("work order {id}: {} → {state}", text(&e["from"]))
        }
        _ => format!("work order {id}: {state}"),
    };
    if let Some(crew) = view["crew"].as_str() {
        line.push_str(&format!(" (crew {crew})"));
    }
    println!("{line}");
    Ok(())
}

// The weekly report.

async fn report(
    global: &Global,
    c: &Client,
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<()> {
    let path = query(
        "/v1/inspect/report",
        &[
            ("tenant", tenant.as_deref()),
            ("from", from.as_deref()),
            ("to", to.as_deref()),
        ],
    );
    let r: Value = c
        .get(&path)
        .await
        .map_err(|e| per_tenant(e, &tenant, "the report is per tenant"))?;
    if global.json {
        print_one(&r, true);
        return Ok(());
    }
    let whose = tenant
        .map(|t| format!(" of tenant {t}"))
        .unwrap_or_default();
    println!(
        "road inspection{whose} from {} to {}",
        time(&r["from_ms"]),
        time(&r["to_ms"])
    );
    println!(
        "found {}, fixed {}, closed {}; now overdue {}, open {}; median time to fix {}",
        text(&r["found"]),
        text(&r["fixed"]),
        text(&r["closed"]),
        text(&r["overdue"]),
        text(&r["open"]),
        hours(&r["median_hours_to_fix"]),
    );
    println!();
    let mut t = table();
    t.set_header([
        "CLASS",
        "NAME",
        "FOUND",
        "FIXED",
        "CLOSED",
        "MEDIAN TO FIX",
        "OVERDUE",
    ]);
    for l in items(&r["classes"]) {
        t.add_row([
            Cell::new(text(&l["class"])),
            Cell::new(text(&l["name"])),
            Cell::new(text(&l["found"])),
            Cell::new(text(&l["fixed"])),
            Cell::new(text(&l["closed"])),
            Cell::new(hours(&l["median_hours_to_fix"])),
            Cell::new(text(&l["overdue"])),
        ]);
    }
    println!("{t}");
    Ok(())
}

// Helpers.

/// A list and the `X-Total-Count` the API gave with it.
async fn list_with_total(c: &Client, path: &str) -> anyhow::Result<(Value, Option<u64>)> {
    let res = c.get_response(path, None).await.map_err(explain)?;
    let total = res
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let all: Value = res
        .json()
        .await
        .context("unexpected answer from the control plane")?;
    Ok((all, total))
}

/// Says so when a list shows only some of what there is.
fn more(shown: usize, total: Option<u64>) {
    if let Some(total) = total
        && total > shown as u64
    {
        println!("{shown} of {total} shown: narrow the list or raise --limit (at most 1000)");
    }
}

/// An error of a read that is per tenant, saying to give `--tenant` when it was missing.
fn per_tenant(e: ClientError, tenant: &Option<String>, what: &str) -> anyhow::Error {
    if tenant.is_none() && e.status() == Some(400) && e.to_string().contains("?tenant=") {
        anyhow::anyhow!("{what}: give --tenant ID")
    } else {
        explain(e)
    }
}

/// `path?key=value&...` of the values given, encoded.
pub(crate) fn query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// Percent-encodes all but the unreserved characters (for a path segment or a query
/// value).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Only the items of `tenant` (all when none is given).
fn of_tenant(all: Value, tenant: Option<&str>) -> Value {
    match (all, tenant) {
        (Value::Array(items), Some(t)) => {
            Value::Array(items.into_iter().filter(|i| i["tenant"] == t).collect())
        }
        (all, _) => all,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes_no(v: &Value) -> String {
    if v == &Value::Bool(true) { "yes" } else { "no" }.into()
}

/// A time in ms since the epoch as RFC 3339 UTC (`-` when none).
fn time(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), rfc3339_ms)
}

fn degrees(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |d| format!("{d:.6}"))
}

fn position(lat: &Value, lon: &Value) -> String {
    format!("{}, {}", degrees(lat), degrees(lon))
}

fn km(metres: &Value) -> String {
    metres
        .as_f64()
        .map_or_else(|| "-".into(), |m| format!("{:.2}", m / 1000.0))
}

/// A model's score, to two decimals (they come as f32).
fn score(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |s| format!("{s:.2}"))
}

fn hours(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |h| format!("{h:.1} h"))
}

/// A class code with its name (`D40 Pothole`; a tenant's own class: its code).
fn class(v: &Value) -> String {
    let code = text(v);
    let name = class_name(&code);
    if name == code {
        code
    } else {
        format!("{code} {name}")
    }
}

/// A device's rules: `pothole=D40@0.5, ...`.
fn rules(v: &Value) -> String {
    let all: Vec<String> = items(v)
        .iter()
        .map(|r| {
            format!(
                "{}={}@{}",
                text(&r["label"]),
                text(&r["class"]),
                text(&r["min_score"])
            )
        })
        .collect();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(", ")
    }
}

/// A crew's areas: `S,W,N,E; ...`.
fn areas(v: &Value) -> String {
    let all: Vec<String> = items(v)
        .iter()
        .map(|a| {
            ["south", "west", "north", "east"]
                .iter()
                .map(|k| text(&a[*k]))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    if all.is_empty() {
        "-".into()
    } else {
        all.join("; ")
    }
}

/// Prints name/value lines.
fn fields(rows: &[(&str, String)]) {
    let mut t = table();
    for (k, v) in rows {
        t.add_row([Cell::new(k), Cell::new(v)]);
    }
    println!("{t}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn detect_rules_and_areas_parse() {
        assert_eq!(
            parse_detect("pothole=D40@0.6").expect("parses"),
            json!({"label": "pothole", "class": "D40", "min_score": 0.6})
        );
        assert_eq!(
            parse_detect("a=b=d00").expect("parses"),
            json!({"label": "a=b", "class": "D00"})
        );
        for bad in ["pothole", "=d40", "pothole=", "p=d40@2", "p=d40@x"] {
            assert!(parse_detect(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_area("-33.9, 18.4,-33.8,18.5").expect("parses"),
            json!({"south": -33.9, "west": 18.4, "north": -33.8, "east": 18.5})
        );
        for bad in ["1,2,3", "1,2,3,x", "1,2,3,4,5", "1,2,3,inf"] {
            assert!(parse_area(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "lingjing",
            "inspect",
            "crew",
            "add",
            "south",
            "--tenant",
            "city",
            "--name",
            "South",
            "--area",
            "-34,18,-33,19",
            "--area",
            "1,2,3,4",
        ])
        .expect("parses");
        let Command::Inspect(InspectCmd::Crew(CrewCmd::Add(a))) = cli.command else {
            panic!("not inspect crew add");
        };
        assert_eq!(a.areas, ["-34,18,-33,19", "1,2,3,4"]);
        assert!(Cli::try_parse_from(["lingjing", "inspect", "fix", "WO-1"]).is_err());
        assert!(
            Cli::try_parse_from(["lingjing", "inspect", "fix", "WO-1", "--note", "patched"])
                .is_ok()
        );
    }

    #[test]
    fn the_view_in_words() {
        assert_eq!(
            query("/v1/defects", &[("tenant", Some("a b")), ("state", None)]),
            "/v1/defects?tenant=a%20b"
        );
        assert_eq!(encode("WO-2/x?"), "WO-2%2Fx%3F");
        assert_eq!(class(&json!("D40")), "D40 Pothole");
        assert_eq!(class(&json!("manhole")), "manhole");
        let now = 1_000;
        assert!(overdue(&json!({"state": "dispatched", "due_ms": 999}), now));
        assert!(!overdue(&json!({"state": "fixed", "due_ms": 999}), now));
        assert!(!overdue(&json!({"state": "closed", "due_ms": 999}), now));
        assert!(!overdue(&json!({"state": "open", "due_ms": 1_001}), now));
        assert_eq!(
            rules(&json!([{"label": "pothole", "class": "D40", "min_score": 0.5}])),
            "pothole=D40@0.5"
        );
        assert_eq!(km(&json!(1234.5)), "1.23");
        assert_eq!(score(&json!(0.949999988079071)), "0.95");
    }
}
