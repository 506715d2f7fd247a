//! Crash safety of the control plane, with a real process: four clients write through the
//! REST API at once (each creating tenants with ids of its own), `lingjing control` is
//! killed with SIGKILL in the middle of the stream, and after a restart on the same
//! database every write that had been acknowledged (2xx) is there; writes cut off by the
//! kill may or may not be. Three rounds of writes, kills and restarts. On SQLite always; on PostgreSQL when `LINGJING_TEST_POSTGRES`
//! holds a server URL (the test creates a database of its own there and drops it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::start_control;
use lingjing_client::Client;
use serde_json::{Value, json};

const TOKEN: &str = "crash-test-operator-token-0123456789";
const WRITERS: usize = 4;
/// Acknowledged writes before the kill.
const BEFORE_KILL: usize = 200;
/// Kills, each followed by a restart.
const ROUNDS: usize = 3;

/// Asserts that every id in `acked` is a tenant of the control plane at `url`; returns how
/// many tenants there are.
async fn all_present(url: &str, acked: &[String]) -> usize {
    let client = Client::new(url, TOKEN).expect("client");
    let tenants: Vec<Value> = client.get("/v1/tenants").await.expect("list tenants");
    let present: BTreeSet<String> = tenants
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(present.len(), tenants.len(), "no tenant twice");
    let lost: Vec<&String> = acked.iter().filter(|id| !present.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    present.len()
}

/// One round: `WRITERS` clients write tenants `r{round}-w{w}-t{i}` until `BEFORE_KILL`
/// writes are acknowledged, then the control plane is killed; returns the acknowledged ids.
async fn write_then_kill(control: &mut common::Proc, url: &str, round: usize) -> Vec<String> {
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = Client::new(url, TOKEN).expect("client");
        let (acked, count, killed) = (acked.clone(), count.clone(), killed.clone());
        writers.push(tokio::spawn(async move {
            // Bounded, in case the kill never comes.
            for i in 0..5_000 {
                let id = format!("r{round}-w{w}-t{i}");
                let body = json!({ "id": id, "name": format!("Tenant {i} of writer {w}") });
                match client.post::<_, Value>("/v1/tenants", &body).await {
                    Ok(_) => {
                        acked.lock().expect("acked").push(id);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // The kill cuts this write off: acknowledged or not, we cannot know.
                    Err(_) if killed.load(Ordering::SeqCst) => return,
                    Err(e) => panic!("write {id} failed before the kill: {e}"),
                }
            }
        }));
    }

    // Kill it in the middle of the stream: a write is in flight on every writer.
    let deadline = Instant::now() + Duration::from_secs(40);
    while count.load(Ordering::SeqCst) < BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged",
            count.load(Ordering::SeqCst)
        );
        if let Some(stopped) = writers.iter().position(|w| w.is_finished()) {
            writers.remove(stopped).await.expect("a writer failed");
            panic!("a writer stopped before the kill");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    control.kill9();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() >= BEFORE_KILL);
    acked
}

async fn writes_acknowledged_before_a_kill_survive_it(backend: &str, db: &str, dir: &Path) {
    let token_file = dir.join("operator.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    // Three rounds of writes and kills, each restart checking everything acknowledged so far.
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        let (mut control, url) = start_control(db, &token_file, "127.0.0.1:0");
        all_present(&url, &acked).await;
        acked.extend(write_then_kill(&mut control, &url, round).await);
    }
    let (_control, url) = start_control(db, &token_file, "127.0.0.1:0");
    let total = all_present(&url, &acked).await;
    eprintln!(
        "{backend}: {} writes acknowledged over {ROUNDS} kills, all kept; {} more were cut off and kept anyway",
        acked.len(),
        total - acked.len()
    );
    // And the store takes writes again.
    let client = Client::new(&url, TOKEN).expect("client");
    let _: Value = client
        .post(
            "/v1/tenants",
            &json!({ "id": "after-the-crashes", "name": "After" }),
        )
        .await
        .expect("write after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("control.db").display());
    writes_acknowledged_before_a_kill_survive_it("sqlite", &db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    lingjing_control::testing::with_scratch_postgres("the crash test", |db| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        writes_acknowledged_before_a_kill_survive_it("postgres", &db, dir.path()).await;
    })
    .await;
}
