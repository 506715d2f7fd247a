//! Rollout time to N simulated edge AI nodes (issue 16; `bench/rollout.sh` runs it).
//!
//! For each N: a control plane in this process on a fresh SQLite file (as the tests start
//! one), ten sites, N nodes with the `aiot` role, each with its own credential (join
//! token exchanged), one model with `ROUNDS` versions (a stand-in artefact). Each node is
//! simulated by a task that long-polls `GET /v1/snapshots/aiot?after=V` with the node's
//! credential and, when the snapshot gives it a new target (revision), at once sends its
//! heartbeat (`role: aiot`, a slot report of that revision and version at stage
//! `committed`): no fetch, no self-test, no probation. A node that hears nothing for 20 s
//! heartbeats anyway, as a real one does.
//!
//! Each round makes one rollout (`POST /v1/rollouts` with the defaults: a canary of 1,
//! then 10%, 50% and 100% of the nodes, each group fully committed before the next) of the
//! next version, and measures the wall time from just before the POST to the driver step
//! that finds it `succeeded`.
//!
//! The driver: the control plane's own driver task is stopped and this program runs the
//! same loop (`rollout_driver::drive`: `step_rollouts` every second, missed ticks
//! delayed) itself, started with the control plane (so a rollout is made at a random point
//! of the second, as in production), in order to count the ticks a rollout takes and to
//! time each call of `step_rollouts` (the control plane's time per driver step). A
//! rollout needs at least one tick per group and one more to see the last group
//! committed: with four groups, 5 ticks, i.e. 4 to 5 s of wall time whatever N, unless
//! the nodes take longer than a tick to commit a group. What the nodes take is measured
//! too: per group, from the end of the step that assigned it to the last of its nodes'
//! heartbeats answered ("reaction").
//!
//! `cargo run --release -p lingjing-control --example rollout_bench -- [--nodes 10,100,1000] [--rounds 3] [--sites 10]`

use std::collections::BTreeMap;
use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use lingjing_control::rollout::RolloutState;
use lingjing_control::rollout_driver::{Stepped, step_rollouts};
use lingjing_control::server::{DEFAULT_METER_RETENTION_DAYS, DEFAULT_ZONE};
use lingjing_control::{ControlConfig, Store, serve};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const MODEL: &str = "text-direction";
const OPERATOR_TOKEN: &str = "rollout-bench-operator-token";
/// Requests in flight while setting the fleet up.
const SETUP_CONCURRENCY: usize = 8;
/// A simulated node's long-poll wait (it heartbeats when it ends without news).
const POLL_MS: u64 = 20_000;
/// The driver's period, as `server::serve_with` starts it.
const TICK: Duration = Duration::from_secs(1);
/// A rollout not finished after this long is a failure of the run.
const GIVE_UP: Duration = Duration::from_secs(300);

struct Args {
    nodes: Vec<usize>,
    rounds: u32,
    sites: usize,
}

fn args() -> Res<Args> {
    let mut a = Args {
        nodes: vec![10, 100, 1000],
        rounds: 3,
        sites: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nodes" => {
                a.nodes = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--nodes {value}: {e}"))?;
            }
            "--rounds" => a.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--sites" => a.sites = value.parse().map_err(|e| format!("--sites: {e}"))?,
            _ => {
                return Err(
                    format!("unknown {flag}; usage: rollout_bench [--nodes 10,100,1000] [--rounds 3] [--sites 10]")
                        .into(),
                );
            }
        }
    }
    if a.rounds == 0 || a.sites == 0 || a.nodes.contains(&0) {
        return Err("rounds, sites and node counts: at least 1".into());
    }
    Ok(a)
}

/// A client of the control plane with one token.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// Sends a request; a status other than `want` is an error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: &[u16],
    ) -> Res<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        if !want.contains(&status) {
            return Err(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            )
            .into());
        }
        Ok(if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        })
    }

    async fn post(&self, path: &str, body: Value) -> Res<Value> {
        self.call(reqwest::Method::POST, path, Some(body), &[201])
            .await
    }
}

/// What a simulated node reads of the `aiot` snapshot.
#[derive(Deserialize)]
struct Snap {
    version: u64,
    body: SnapBody,
}

#[derive(Deserialize)]
struct SnapBody {
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    node: String,
    slot: String,
    version: u32,
    revision: u64,
}

/// A node's heartbeat reporting its slot committed at `(revision, version)`.
fn heartbeat(applied: u64, slot: Option<(u64, u32)>) -> Value {
    let aiot: Vec<Value> = slot
        .map(|(revision, version)| {
            json!({"slot": MODEL, "revision": revision, "version": version, "stage": "committed",
                   "serving": version, "committed": version})
        })
        .into_iter()
        .collect();
    json!({ "role": "aiot", "applied_version": applied, "aiot": aiot })
}

/// One simulated edge AI node: heartbeats (counted in `online` the first time), then
/// long-polls its snapshot and commits each new target at once; each commit (revision,
/// when its heartbeat was answered) goes to `commits`.
async fn simulated_node(
    api: Api,
    id: String,
    commits: mpsc::UnboundedSender<(u64, Instant)>,
    errors: Arc<AtomicU64>,
    online: Arc<AtomicU64>,
) {
    let beat_path = format!("/v1/nodes/{id}/heartbeat");
    let mut after = 0u64;
    let mut slot: Option<(u64, u32)> = None;
    let mut beat = true;
    let mut first = true;
    loop {
        if beat {
            match api
                .call(
                    reqwest::Method::POST,
                    &beat_path,
                    Some(heartbeat(after, slot)),
                    &[204],
                )
                .await
            {
                Ok(_) => {
                    beat = false;
                    if first {
                        first = false;
                        online.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("{id}: heartbeat: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let polled = api
            .http
            .get(format!(
                "{}/v1/snapshots/aiot?after={after}&timeout_ms={POLL_MS}",
                api.base
            ))
            .bearer_auth(&api.token)
            .send()
            .await;
        let res = match polled {
            Ok(r) => r,
            Err(e) => {
                if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("{id}: snapshot: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match res.status().as_u16() {
            200 => {
                let snap: Snap = match res.json().await {
                    Ok(s) => s,
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("{id}: snapshot body: {e}");
                        }
                        continue;
                    }
                };
                after = snap.version;
                let mine = snap
                    .body
                    .targets
                    .iter()
                    .find(|t| t.node == id && t.slot == MODEL)
                    .map(|t| (t.revision, t.version));
                if mine.is_some() && mine != slot {
                    slot = mine;
                    if api
                        .call(
                            reqwest::Method::POST,
                            &beat_path,
                            Some(heartbeat(after, slot)),
                            &[204],
                        )
                        .await
                        .is_ok()
                    {
                        if let Some((revision, _)) = slot {
                            let _ = commits.send((revision, Instant::now()));
                        }
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        beat = true;
                    }
                }
            }
            // Nothing new for POLL_MS: heartbeat, as a node does.
            304 => beat = true,
            other => {
                if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("{id}: snapshot answered {other}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One call of `step_rollouts` by the driver loop.
struct Tick {
    started: Instant,
    took: Duration,
    stepped: Vec<Stepped>,
}

/// What one rollout took.
struct RoundResult {
    create_ms: f64,
    wall_ms: f64,
    ticks: usize,
    /// Per tick of this rollout: ms of `step_rollouts`, nodes assigned.
    steps: Vec<(f64, usize)>,
    /// Per group: nodes, ms from the end of the step that assigned it to its last commit.
    reactions: Vec<(usize, f64)>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, min and max.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

fn cell(v: &[f64], decimals: usize) -> String {
    let (m, lo, hi) = stats(v);
    format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
}

async fn keep_artifact(api: &Api, bytes: &[u8]) -> Res<String> {
    let digest = hex::encode(Sha256::digest(bytes));
    let res = api
        .http
        .put(format!("{}/v1/artifacts/sha256/{digest}", api.base))
        .bearer_auth(&api.token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await?;
    if !matches!(res.status().as_u16(), 200 | 201) {
        return Err(format!("artefact upload: {}", res.status()).into());
    }
    Ok(digest)
}

/// Regions, a line, `sites` sites, `n` edge AI nodes with their credentials and the
/// model's versions 1..=`versions`; returns each node's client.
async fn fleet(api: &Api, n: usize, sites: usize, versions: u32) -> Res<Vec<(String, Api)>> {
    api.post(
        "/v1/regions",
        json!({"id": "cn", "name": "Region cn", "parent": null, "level": "country"}),
    )
    .await?;
    api.post("/v1/lines", json!({"id": "telecom", "name": "Line telecom"}))
        .await?;
    let sites = sites.min(n);
    for s in 0..sites {
        api.post(
            "/v1/sites",
            json!({"id": format!("s-{s:03}"), "name": format!("Site {s}"), "region": "cn",
                   "lines": ["telecom"], "bandwidth_mbps": 10000, "parent": null}),
        )
        .await?;
    }
    let ids: Vec<String> = (0..n).map(|i| format!("ai-{i:05}")).collect();
    stream::iter(ids.iter().enumerate())
        .map(|(i, id)| async move {
            api.post(
                "/v1/nodes",
                json!({"id": id, "site": format!("s-{:03}", i % sites), "roles": ["aiot"]}),
            )
            .await
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let nodes: Vec<(String, Api)> = stream::iter(ids)
        .map(|id| async move {
            let t = api
                .post(&format!("/v1/nodes/{id}/join-token"), json!({}))
                .await?;
            let c = api
                .post(
                    &format!("/v1/nodes/{id}/credential"),
                    json!({"join_token": t["join_token"]}),
                )
                .await?;
            let token = c["credential"]
                .as_str()
                .ok_or("no credential in the answer")?
                .to_owned();
            Ok::<_, BoxError>((
                id,
                Api {
                    token,
                    ..api.clone()
                },
            ))
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let artifact = keep_artifact(api, b"stand-in for an ONNX file").await?;
    for v in 1..=versions {
        api.post(
            &format!("/v1/models/{MODEL}/versions"),
            json!({
                "model": MODEL, "version": v, "artifact": artifact,
                "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                          "scale": 0.003921569, "mean": [0.5], "std": [0.5]},
                "output": {"kind": "classifier", "labels": ["0", "180"]},
            }),
        )
        .await?;
    }
    Ok(nodes)
}

/// One rollout of `version`, from its creation to `succeeded`.
async fn round(
    api: &Api,
    version: u32,
    ticks: &mut mpsc::UnboundedReceiver<Tick>,
    commits: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
) -> Res<RoundResult> {
    while ticks.try_recv().is_ok() {}
    while commits.try_recv().is_ok() {}
    let t0 = Instant::now();
    let made = api
        .post("/v1/rollouts", json!({"model": MODEL, "version": version}))
        .await?;
    let create_ms = ms(t0.elapsed());
    let id = made["id"].as_str().ok_or("no rollout id")?.to_owned();
    let mut steps = Vec::new();
    // Per configuration version a step made: (nodes assigned, when the step ended).
    let mut assigned: BTreeMap<u64, (usize, Instant)> = BTreeMap::new();
    let end = loop {
        let tick = tokio::time::timeout(GIVE_UP.saturating_sub(t0.elapsed()), ticks.recv())
            .await
            .map_err(|_| format!("rollout {id} not succeeded after {GIVE_UP:?}"))?
            .ok_or("the driver stopped")?;
        let Some(s) = tick.stepped.iter().find(|s| s.rollout == id) else {
            continue;
        };
        let ended = tick.started + tick.took;
        steps.push((ms(tick.took), s.assigned.len()));
        if let Some(v) = s.version.filter(|_| !s.assigned.is_empty()) {
            assigned.insert(v, (s.assigned.len(), ended));
        }
        match s.state {
            RolloutState::Succeeded => break ended,
            RolloutState::Running => {}
            other => return Err(format!("rollout {id} ended {other:?}").into()),
        }
    };
    let wall_ms = ms(end - t0);
    let mut last: BTreeMap<u64, (usize, Instant)> = BTreeMap::new();
    while let Ok((revision, at)) = commits.try_recv() {
        let e = last.entry(revision).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.max(at);
    }
    let mut reactions = Vec::new();
    for (v, (n, ended)) in &assigned {
        let (got, at) = last
            .get(v)
            .copied()
            .ok_or_else(|| format!("no commit of revision {v}"))?;
        if got != *n {
            return Err(format!("revision {v}: {got} commits of {n} nodes").into());
        }
        reactions.push((*n, ms(at.saturating_duration_since(*ended))));
    }
    Ok(RoundResult {
        create_ms,
        wall_ms,
        ticks: steps.len(),
        steps,
        reactions,
    })
}

/// Everything for one fleet size; prints its rounds and returns them.
async fn one_size(n: usize, a: &Args) -> Res<Vec<RoundResult>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite_file(&dir.path().join("control.db")).await?;
    let config = ControlConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        operator_token: OPERATOR_TOKEN.to_owned(),
        zone: DEFAULT_ZONE.to_owned(),
        health: None,
        storage: Default::default(),
        meter_retention_days: DEFAULT_METER_RETENTION_DAYS,
        policy: Default::default(),
    };
    let handle = serve(config, store).await?;
    // This program runs the driver loop itself, to count and time its ticks.
    handle.stop_rollout_driver();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(POLL_MS) + Duration::from_secs(30))
        .build()?;
    let api = Api {
        http,
        base: handle.url(),
        token: OPERATOR_TOKEN.to_owned(),
    };
    let setup = Instant::now();
    let nodes = fleet(&api, n, a.sites, a.rounds).await?;
    eprintln!(
        "N={n}: {n} nodes at {} sites with credentials and {} versions set up in {:.1} s",
        a.sites.min(n),
        a.rounds,
        setup.elapsed().as_secs_f64()
    );
    let (commit_tx, mut commits) = mpsc::unbounded_channel();
    let errors = Arc::new(AtomicU64::new(0));
    let beating = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for (id, node_api) in nodes {
        tasks.push(tokio::spawn(simulated_node(
            node_api,
            id,
            commit_tx.clone(),
            errors.clone(),
            beating.clone(),
        )));
    }
    // Every node online (its first heartbeat answered) before the first rollout.
    let online = Instant::now();
    while (beating.load(Ordering::Relaxed) as usize) < n {
        if online.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {} of {n} nodes heartbeated within 120 s",
                beating.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "N={n}: every node heartbeating and polling after {:.1} s",
        online.elapsed().as_secs_f64()
    );
    let (tick_tx, mut ticks) = mpsc::unbounded_channel();
    let driver = {
        let (store, hub) = (handle.store().clone(), handle.hub().clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let started = Instant::now();
                let stepped = step_rollouts(&store, &hub, lingjing_control::time::now_ms())
                    .await
                    .unwrap_or_else(|e| {
                        eprintln!("driver step failed: {e}");
                        Vec::new()
                    });
                let took = started.elapsed();
                if tick_tx
                    .send(Tick {
                        started,
                        took,
                        stepped,
                    })
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    // Start the first rollout at a random point of the driver's second, like the others.
    tokio::time::sleep(Duration::from_millis(1234)).await;
    let mut results = Vec::new();
    for r in 1..=a.rounds {
        let res = round(&api, r, &mut ticks, &mut commits).await?;
        let steps: Vec<String> = res
            .steps
            .iter()
            .map(|(t, k)| format!("{t:.1} ms/{k}"))
            .collect();
        let reactions: Vec<String> = res
            .reactions
            .iter()
            .map(|(k, t)| format!("{k} in {t:.0} ms"))
            .collect();
        println!(
            "N={n} round {r}: succeeded {:.0} ms after the POST ({:.1} ms), {} ticks; \
             driver steps (time/nodes assigned): {}; groups committed: {}",
            res.wall_ms,
            res.create_ms,
            res.ticks,
            steps.join(", "),
            reactions.join(", ")
        );
        results.push(res);
        // The next rollout at another point of the second.
        tokio::time::sleep(Duration::from_millis(1000 + 377 * u64::from(r))).await;
    }
    let failures = errors.load(Ordering::Relaxed);
    if failures > 0 {
        eprintln!("N={n}: {failures} failed requests of the simulated nodes (retried)");
    }
    driver.abort();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), handle.shutdown()).await;
    Ok(results)
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = args()?;
    let mut table = Vec::new();
    for &n in &a.nodes {
        let results = one_size(n, &a).await?;
        table.push((n, results));
    }
    println!();
    println!(
        "| nodes | groups | wall s, POST to succeeded | ticks | slowest group committed, ms after its step | driver step ms, median (max) | POST /v1/rollouts ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, results) in &table {
        let wall: Vec<f64> = results.iter().map(|r| r.wall_ms / 1000.0).collect();
        let ticks: Vec<f64> = results.iter().map(|r| r.ticks as f64).collect();
        let slowest: Vec<f64> = results
            .iter()
            .map(|r| r.reactions.iter().map(|x| x.1).fold(0.0, f64::max))
            .collect();
        let steps: Vec<f64> = results
            .iter()
            .flat_map(|r| r.steps.iter().map(|s| s.0))
            .collect();
        let create: Vec<f64> = results.iter().map(|r| r.create_ms).collect();
        let groups: Vec<String> = results
            .first()
            .map(|r| r.reactions.iter().map(|x| x.0.to_string()).collect())
            .unwrap_or_default();
        let (step_median, _, step_max) = stats(&steps);
        println!(
            "| {n} | {} | {} | {} | {} | {step_median:.1} ({step_max:.1}) | {} |",
            groups.join("+"),
            cell(&wall, 2),
            cell(&ticks, 0),
            cell(&slowest, 0),
            cell(&create, 1),
        );
    }
    println!(
        "\n{} rounds per size, median (min–max); the driver ticks every {} s.",
        a.rounds,
        TICK.as_secs()
    );
    Ok(())
}
