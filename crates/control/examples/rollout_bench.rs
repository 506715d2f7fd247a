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
//! too: per group, from the end of the step that assigned it to the moment the last of
//! its nodes had the snapshot naming its target, and to the last of their heartbeats
//! answered. The snapshot's size and the bytes the nodes received are printed: the `aiot`
//! snapshot holds every node's targets, so each version is N answers of O(N) bytes.
//!
//! By default a simulated node heartbeats only when it commits and after a long-poll of
//! 20 s without news. `--agent-beats-ms 2000` makes it heartbeat as `lingjing aiot`'s
//! agent does: every 2 s and on every snapshot it applies (N/2 heartbeats a second on
//! top, each a write of the control plane's database).
//!
//! `cargo run --release -p lingjing-control --example rollout_bench -- [--nodes 10,100,1000] [--rounds 3] [--sites 10] [--agent-beats-ms 2000]`

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
    /// Heartbeats like the real agent: this often, and on every snapshot.
    agent_beats: Option<Duration>,
}

fn args() -> Res<Args> {
    let mut a = Args {
        nodes: vec![10, 100, 1000],
        rounds: 3,
        sites: 10,
        agent_beats: None,
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
            "--agent-beats-ms" => {
                let every: u64 = value
                    .parse()
                    .map_err(|e| format!("--agent-beats-ms: {e}"))?;
                a.agent_beats = (every > 0).then(|| Duration::from_millis(every));
            }
            _ => {
                return Err(
                    format!("unknown {flag}; usage: rollout_bench [--nodes 10,100,1000] [--rounds 3] [--sites 10] [--agent-beats-ms 2000]")
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

/// A node's commit of a target: its revision, when the node had the snapshot giving it,
/// when its heartbeat reporting it committed was answered.
type Commit = (u64, Instant, Instant);

/// What the simulated nodes count together.
#[derive(Default)]
struct Counters {
    /// Failed requests (each retried).
    errors: AtomicU64,
    /// Nodes whose first heartbeat was answered.
    online: AtomicU64,
    /// Snapshot bytes the nodes received.
    snapshot_bytes: AtomicU64,
    /// Snapshots the nodes received.
    snapshots: AtomicU64,
    /// Nanoseconds the nodes spent parsing them (CPU time of the simulation, not of the
    /// control plane).
    parse_ns: AtomicU64,
}

impl Counters {
    /// Counts a failure; says whether to print it (the first few only).
    fn failed(&self) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed) < 3
    }
}

/// One simulated edge AI node: heartbeats (counted online the first time), then
/// long-polls its snapshot and commits each new target at once, each commit going to
/// `commits`. With `agent_beats`, it also heartbeats that often and acknowledges every
/// snapshot with a heartbeat, as `lingjing_client::agent` does (every 2 s, and on each
/// applied version).
async fn simulated_node(
    api: Api,
    id: String,
    commits: mpsc::UnboundedSender<Commit>,
    counters: Arc<Counters>,
    agent_beats: Option<Duration>,
) {
    let beat_path = format!("/v1/nodes/{id}/heartbeat");
    // What the node has applied, for the periodic heartbeats.
    let applied = std::sync::Mutex::new((0u64, None::<(u64, u32)>));
    let periodic = async {
        let Some(every) = agent_beats else {
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::time::sleep(every).await;
            let (after, slot) = *applied.lock().expect("not poisoned");
            let beat = heartbeat(after, slot);
            if let Err(e) = api
                .call(reqwest::Method::POST, &beat_path, Some(beat), &[204])
                .await
                && counters.failed()
            {
                eprintln!("{id}: heartbeat: {e}");
            }
        }
    };
    tokio::select! {
        () = periodic => {}
        () = poll_and_commit(&api, &id, &beat_path, &applied, &commits, &counters, agent_beats.is_some()) => {}
    }
}

/// The long-poll loop of [`simulated_node`]; `ack`: a heartbeat for every snapshot.
async fn poll_and_commit(
    api: &Api,
    id: &str,
    beat_path: &str,
    applied: &std::sync::Mutex<(u64, Option<(u64, u32)>)>,
    commits: &mpsc::UnboundedSender<Commit>,
    counters: &Counters,
    ack: bool,
) {
    let mut after = 0u64;
    let mut slot: Option<(u64, u32)> = None;
    let mut beat = true;
    let mut first = true;
    loop {
        if beat {
            match api
                .call(
                    reqwest::Method::POST,
                    beat_path,
                    Some(heartbeat(after, slot)),
                    &[204],
                )
                .await
            {
                Ok(_) => {
                    beat = false;
                    if first {
                        first = false;
                        counters.online.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    if counters.failed() {
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
                if counters.failed() {
                    eprintln!("{id}: snapshot: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match res.status().as_u16() {
            200 => {
                let parsed = match res.bytes().await {
                    Ok(body) => {
                        counters
                            .snapshot_bytes
                            .fetch_add(body.len() as u64, Ordering::Relaxed);
                        counters.snapshots.fetch_add(1, Ordering::Relaxed);
                        let parsing = Instant::now();
                        let snap = serde_json::from_slice::<Snap>(&body).map_err(BoxError::from);
                        counters
                            .parse_ns
                            .fetch_add(parsing.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        snap
                    }
                    Err(e) => Err(e.into()),
                };
                let had = Instant::now();
                let snap: Snap = match parsed {
                    Ok(s) => s,
                    Err(e) => {
                        if counters.failed() {
                            eprintln!("{id}: snapshot body: {e}");
                        }
                        continue;
                    }
                };
                after = snap.version;
                beat = ack;
                let mine = snap
                    .body
                    .targets
                    .iter()
                    .find(|t| t.node == id && t.slot == MODEL)
                    .map(|t| (t.revision, t.version));
                if mine.is_some() && mine != slot {
                    slot = mine;
                    beat = false;
                    if api
                        .call(
                            reqwest::Method::POST,
                            beat_path,
                            Some(heartbeat(after, slot)),
                            &[204],
                        )
                        .await
                        .is_ok()
                    {
                        if let Some((revision, _)) = slot {
                            let _ = commits.send((revision, had, Instant::now()));
                        }
                    } else {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        beat = true;
                    }
                }
                *applied.lock().expect("not poisoned") = (after, slot);
            }
            // Nothing new for POLL_MS: heartbeat, as a node does.
            304 => beat = true,
            other => {
                if counters.failed() {
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
    /// Per group: nodes; ms from the end of the step that assigned it to the last of its
    /// nodes having the snapshot, and to the last of their commits answered.
    reactions: Vec<(usize, f64, f64)>,
}

/// This process's CPU time (user + system, all threads) in seconds, from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count the fields after its ")".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux (sysconf(_SC_CLK_TCK); no libc here).
    Some(ticks / 100.0)
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
    api.post(
        "/v1/lines",
        json!({"id": "telecom", "name": "Line telecom"}),
    )
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
    commits: &mut mpsc::UnboundedReceiver<Commit>,
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
    // Per revision: commits, the last snapshot had, the last commit answered.
    let mut last: BTreeMap<u64, (usize, Instant, Instant)> = BTreeMap::new();
    while let Ok((revision, had, done)) = commits.try_recv() {
        let e = last.entry(revision).or_insert((0, had, done));
        e.0 += 1;
        e.1 = e.1.max(had);
        e.2 = e.2.max(done);
    }
    let mut reactions = Vec::new();
    for (v, (n, ended)) in &assigned {
        let (got, had, done) = last
            .get(v)
            .copied()
            .ok_or_else(|| format!("no commit of revision {v}"))?;
        if got != *n {
            return Err(format!("revision {v}: {got} commits of {n} nodes").into());
        }
        reactions.push((
            *n,
            ms(had.saturating_duration_since(*ended)),
            ms(done.saturating_duration_since(*ended)),
        ));
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
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::with_capacity(n);
    for (id, node_api) in nodes {
        tasks.push(tokio::spawn(simulated_node(
            node_api,
            id,
            commit_tx.clone(),
            counters.clone(),
            a.agent_beats,
        )));
    }
    // Every node online (its first heartbeat answered) before the first rollout.
    let online = Instant::now();
    while (counters.online.load(Ordering::Relaxed) as usize) < n {
        if online.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {} of {n} nodes heartbeated within 120 s",
                counters.online.load(Ordering::Relaxed)
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
    let (bytes_before, snapshots_before, parse_before) = (
        counters.snapshot_bytes.load(Ordering::Relaxed),
        counters.snapshots.load(Ordering::Relaxed),
        counters.parse_ns.load(Ordering::Relaxed),
    );
    let (cpu_before, wall_before) = (cpu_seconds(), Instant::now());
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
            .map(|(k, had, done)| format!("{k} in {had:.0}/{done:.0} ms"))
            .collect();
        println!(
            "N={n} round {r}: succeeded {:.0} ms after the POST ({:.1} ms), {} ticks; \
             driver steps (time/nodes assigned): {}; groups (nodes in ms after their step: \
             all had the snapshot/all committed): {}",
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
    let (cpu_after, wall) = (cpu_seconds(), wall_before.elapsed().as_secs_f64());
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        eprintln!(
            "N={n}: CPU of this process (control plane and simulated nodes) over the rounds: \
             {:.1} s in {wall:.1} s of wall time ({:.0}% of one core); the nodes' JSON \
             parsing of snapshots alone {:.1} s",
            after - before,
            (after - before) / wall * 100.0,
            (counters.parse_ns.load(Ordering::Relaxed) - parse_before) as f64 / 1e9
        );
    }
    let snapshot = api
        .http
        .get(format!(
            "{}/v1/snapshots/aiot?after=0&timeout_ms=0",
            api.base
        ))
        .bearer_auth(&api.token)
        .send()
        .await?
        .bytes()
        .await?;
    eprintln!(
        "N={n}: the aiot snapshot is {:.1} KiB with every node's target; over the rounds the \
         nodes received {} snapshots, {:.1} MiB",
        snapshot.len() as f64 / 1024.0,
        counters.snapshots.load(Ordering::Relaxed) - snapshots_before,
        (counters.snapshot_bytes.load(Ordering::Relaxed) - bytes_before) as f64 / 1048576.0
    );
    let failures = counters.errors.load(Ordering::Relaxed);
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
        "| nodes | groups | wall s, POST to succeeded | ticks | slowest group: all had the snapshot, ms after its step | all committed | driver step ms, median (max) | POST /v1/rollouts ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (n, results) in &table {
        let wall: Vec<f64> = results.iter().map(|r| r.wall_ms / 1000.0).collect();
        let ticks: Vec<f64> = results.iter().map(|r| r.ticks as f64).collect();
        let slowest = |pick: fn(&(usize, f64, f64)) -> f64| -> Vec<f64> {
            results
                .iter()
                .map(|r| r.reactions.iter().map(pick).fold(0.0, f64::max))
                .collect()
        };
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
            "| {n} | {} | {} | {} | {} | {} | {step_median:.1} ({step_max:.1}) | {} |",
            groups.join("+"),
            cell(&wall, 2),
            cell(&ticks, 0),
            cell(&slowest(|x| x.1), 0),
            cell(&slowest(|x| x.2), 0),
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
