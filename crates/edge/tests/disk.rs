//! The disk tier and the hybrid store: entries round-trip with their variants and headers,
//! survive a reopen and a `kill -9` in the middle of a stream of writes, torn, truncated or
//! corrupted files are detected by checksum and never served, leftover temp files are
//! cleaned, the size limit evicts, and the hybrid store keeps memory and disk consistent
//! under concurrent puts, removes and promoting reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use lingjing_edge::cache::disk::{DiskOptions, DiskStore, key_hash};
use lingjing_edge::cache::hybrid::HybridStore;
use lingjing_edge::cache::policy::Freshness;
use lingjing_edge::cache::store::{CachedResponse, Entry, MemoryStore, Storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn options(capacity: u64) -> DiskOptions {
    let mut o = DiskOptions::new(capacity);
    o.fsync = false;
    o
}

fn open(dir: &Path) -> DiskStore {
    DiskStore::open(dir, options(1 << 30)).expect("open the disk store")
}

/// A response whose body is `body`, with a few headers (one repeated) and tags.
fn response(variant: &str, body: Bytes, version: u64) -> CachedResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.append("set-cookie", HeaderValue::from_static("a=1"));
    headers.append("set-cookie", HeaderValue::from_static("b=2"));
    headers.insert("x-version", HeaderValue::from(version));
    headers.insert("x-len", HeaderValue::from(body.len()));
    headers.insert(
        "x-crc",
        HeaderValue::from(u64::from(crc32fast::hash(&body))),
    );
    let at = UNIX_EPOCH + Duration::new(1_700_000_000 + version, 987_654_321);
    CachedResponse {
        status: StatusCode::OK,
        headers,
        body,
        freshness: Freshness {
            lifetime: Duration::from_secs(300),
            initial_age: Duration::from_millis(2500),
            stored_at: at,
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(600),
            must_revalidate: version % 2 == 1,
        },
        variant: variant.to_owned(),
        tags: vec!["product".into(), format!("v{version}")],
        stored_at: at,
    }
}

/// A deterministic body of up to 1 MiB for `key` at `version`: a slice of a fixed random
/// buffer (cheap, so that a writer spends its time writing).
fn body(key: &str, version: u64, len: usize) -> Bytes {
    static POOL: OnceLock<Bytes> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let mut b = vec![0u8; 2 << 20];
        StdRng::seed_from_u64(1).fill(&mut b[..]);
        Bytes::from(b)
    });
    let len = len.min(1 << 20);
    let seed = u64::from(crc32fast::hash(key.as_bytes())) + version * 4099;
    let offset = (seed % (1 << 20)) as usize;
    pool.slice(offset..offset + len)
}

fn entry(key: &str, version: u64, len: usize) -> Arc<Entry> {
    Arc::new(Entry::single(response(
        "",
        body(key, version, len),
        version,
    )))
}

/// An entry with three variants (`Vary: Accept-Encoding`), one with an empty body.
fn varied(key: &str) -> Arc<Entry> {
    let vary = vec![HeaderName::from_static("accept-encoding")];
    let e = Entry::single(response("br", body(key, 1, 3000), 1));
    let e = e.with_variant(vary.clone(), response("gzip", body(key, 2, 5000), 2));
    let e = e.with_variant(vary.clone(), response("", Bytes::new(), 3));
    let e = e.with_variant(vary, response("br", body(key, 4, 70_000), 4));
    Arc::new(e)
}

fn assert_same(a: &Entry, b: &Entry) {
    assert_eq!(a.vary, b.vary);
    assert_eq!(a.variants.len(), b.variants.len());
    for (x, y) in a.variants.iter().zip(&b.variants) {
        assert_eq!(x.status, y.status);
        assert_eq!(x.headers, y.headers);
        assert_eq!(x.body, y.body);
        assert_eq!(x.freshness, y.freshness);
        assert_eq!(x.variant, y.variant);
        assert_eq!(x.tags, y.tags);
        assert_eq!(x.stored_at, y.stored_at);
    }
}

/// Checks an entry written by [`entry`] against the digest in its headers; returns its
/// version.
fn check_complete(e: &Entry) -> u64 {
    assert_eq!(e.variants.len(), 1);
    let v = &e.variants[0];
    let header = |name: &str| -> u64 {
        v.headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("header {name}"))
    };
    assert_eq!(v.body.len() as u64, header("x-len"), "complete body");
    assert_eq!(
        u64::from(crc32fast::hash(&v.body)),
        header("x-crc"),
        "body digest"
    );
    header("x-version")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for f in fs::read_dir(&shard).unwrap() {
            let f = f.unwrap().path();
            if f.to_string_lossy().ends_with(suffix) {
                out.push(f);
            }
        }
    }
    out
}

#[test]
fn entries_round_trip_with_variants_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), DiskOptions::new(1 << 30)).unwrap();
    let e = varied("example.com/a.css");
    store.put("example.com/a.css".into(), e.clone());
    // Queued: served from the queue.
    assert_same(&store.get("example.com/a.css").unwrap(), &e);
    store.flush();
    assert!(store.file_path("example.com/a.css").exists());
    let back = store.get("example.com/a.css").unwrap();
    assert_same(&back, &e);
    assert_eq!(
        back.variant("gzip").unwrap().body,
        body("example.com/a.css", 2, 5000)
    );
    assert!(store.get("example.com/other").is_none());
    let (bytes, entries) = store.usage();
    assert_eq!(entries, 1);
    assert!(bytes >= 75_000 && bytes % 4096 == 0, "{bytes}");
    assert_eq!(store.corrupt_entries(), 0);
}

#[test]
fn entries_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("example.com/obj/{i}")).collect();
    {
        let store = open(dir.path());
        for (i, k) in keys.iter().enumerate() {
            store.put(k.clone(), entry(k, 1, 100 + i * 97));
        }
        store.put(keys[0].clone(), varied(&keys[0]));
        store.remove(&keys[1]);
        // Dropping the store writes what is queued.
    }
    // The directory is locked while open.
    let store = open(dir.path());
    assert!(DiskStore::open(dir.path(), options(1 << 30)).is_err());
    let report = store.startup();
    assert_eq!(report.entries, 199);
    assert_eq!(report.corrupt_removed, 0);
    assert_same(&store.get(&keys[0]).unwrap(), &varied(&keys[0]));
    assert!(store.get(&keys[1]).is_none());
    for (i, k) in keys.iter().enumerate().skip(2) {
        assert_same(&store.get(k).unwrap(), &entry(k, 1, 100 + i * 97));
    }
    assert_eq!(store.tags(&keys[0]).unwrap(), ["product", "v2", "v3", "v4"]);
    assert_eq!(store.tags(&keys[2]).unwrap(), ["product", "v1"]);
    assert!(store.tags(&keys[1]).is_none());
    let mut listed: Vec<String> = store.keys().iter().map(|k| k.to_string()).collect();
    listed.sort();
    let mut expected: Vec<String> = keys.iter().filter(|k| **k != keys[1]).cloned().collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// The bytes of `key`'s file after writing `e` in a scratch directory.
fn file_bytes(key: &str, e: Arc<Entry>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put(key.to_owned(), e);
    store.flush();
    fs::read(store.file_path(key)).unwrap()
}

#[test]
fn truncated_files_are_detected_removed_and_never_served() {
    let mut rng = StdRng::seed_from_u64(9);
    let small = file_bytes("example.com/s", entry("example.com/s", 1, 40));
    let large = file_bytes("example.com/l", varied("example.com/l"));
    let mut cases: Vec<(&str, &[u8], usize)> = (0..small.len())
        .map(|c| ("example.com/s", &small[..], c))
        .collect();
    for _ in 0..40 {
        cases.push((
            "example.com/l",
            &large[..],
            rng.random_range(0..large.len()),
        ));
    }
    cases.push(("example.com/l", &large[..], large.len() - 1));
    let dir = tempfile::tempdir().unwrap();
    for (key, bytes, cut) in cases {
        let path = open(dir.path()).file_path(key);
        fs::write(&path, &bytes[..cut]).unwrap();
        let store = open(dir.path());
        assert!(store.get(key).is_none(), "{key} cut at {cut} was served");
        assert_eq!(store.corrupt_entries(), 1, "{key} cut at {cut}");
        assert!(!path.exists(), "{key} cut at {cut} was kept");
    }
    // And the whole file is fine.
    let store = open(dir.path());
    fs::write(store.file_path("example.com/l"), &large).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_same(
        &store.get("example.com/l").unwrap(),
        &varied("example.com/l"),
    );
}

#[test]
fn a_flipped_byte_is_detected_removed_and_never_served() {
    let key = "example.com/flip";
    let bytes = file_bytes(key, varied(key));
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    // Every byte of the first 600 (prefix and header), then random ones (mostly bodies).
    let positions: Vec<usize> = (0..600)
        .chain((0..200).map(|_| rng.random_range(0..bytes.len())))
        .chain([bytes.len() - 1])
        .collect();
    let store = open(dir.path());
    let path = store.file_path(key);
    for (n, &i) in positions.iter().enumerate() {
        let mut bad = bytes.clone();
        bad[i] ^= 1 << (n % 8);
        // Known to the index (the store was told about the key), read while open.
        store.put(key.to_owned(), varied(key));
        store.flush();
        fs::write(&path, &bad).unwrap();
        assert!(store.get(key).is_none(), "flip at {i} was served");
        assert!(!path.exists(), "flip at {i} was kept");
    }
    assert_eq!(store.corrupt_entries(), positions.len() as u64);
    drop(store);

    // Found by the startup scan (header) or on read (bodies).
    for i in [0, 5, 9, 13, 20, 100, 400, bytes.len() / 2, bytes.len() - 2] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x20;
        fs::write(&path, &bad).unwrap();
        let store = open(dir.path());
        assert!(
            store.get(key).is_none(),
            "flip at {i} was served after reopen"
        );
        assert!(!path.exists());
        assert_eq!(store.corrupt_entries(), 1);
    }
}

#[test]
fn leftover_temp_files_are_cleaned_and_a_cut_write_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let key = "example.com/page";
    let v1 = entry(key, 1, 10_000);
    let store = open(dir.path());
    store.put(key.into(), v1.clone());
    store.flush();
    let path = store.file_path(key);
    drop(store);

    // A crash in the middle of writing version 2: its temp file is half written and was
    // never renamed; another temp file is complete but was not renamed either.
    let v2 = file_bytes(key, entry(key, 2, 50_000));
    let name = format!("{:032x}", key_hash(key));
    let torn = path.with_file_name(format!("{name}.7.tmp"));
    fs::write(&torn, &v2[..v2.len() / 2]).unwrap();
    let whole = path.with_file_name(format!("{name}.8.tmp"));
    fs::write(&whole, &v2).unwrap();
    let stray = dir.path().join("00").join("0123.5.tmp");
    fs::write(&stray, b"junk").unwrap();

    let store = open(dir.path());
    assert_eq!(store.startup().temp_removed, 3);
    assert_eq!(store.startup().entries, 1);
    assert!(!torn.exists() && !whole.exists() && !stray.exists());
    assert_same(&store.get(key).unwrap(), &v1);
    assert!(files(dir.path(), ".tmp").is_empty());
}

#[test]
fn the_size_limit_evicts_and_keeps_the_hot_entries() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 1 << 20;
    let store = DiskStore::open(dir.path(), options(capacity)).unwrap();
    let hot = "example.com/hot";
    store.put(hot.into(), entry(hot, 1, 20_000));
    for i in 0..200 {
        let k = format!("example.com/cold/{i}");
        store.put(k.clone(), entry(&k, 1, 30_000));
        if i % 4 == 0 {
            store.flush();
            assert!(store.get(hot).is_some(), "the hot entry was evicted at {i}");
        }
    }
    store.flush();
    let (bytes, entries) = store.usage();
    assert!(bytes <= capacity, "{bytes} over {capacity}");
    assert!(store.evictions() >= 150, "{}", store.evictions());
    assert_eq!(files(dir.path(), ".ent").len() as u64, entries);
    assert_eq!(store.keys().len() as u64, entries);
    assert!(store.get(hot).is_some());
    // Too large for the tier (over an eighth of it): not written, and the older copy goes.
    store.put(hot.into(), entry(hot, 2, 200_000));
    store.flush();
    assert!(store.get(hot).is_none());
    assert_eq!(store.dropped_writes(), 1);
    drop(store);

    // Reopened with a smaller capacity: evicted down to it.
    let store = DiskStore::open(dir.path(), options(capacity / 4)).unwrap();
    assert!(store.startup().evicted > 0);
    assert!(store.usage().0 <= capacity / 4);
    assert_eq!(files(dir.path(), ".ent").len() as u64, store.usage().1);
}

#[test]
fn a_put_replaced_or_removed_while_queued_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = "example.com/q";
    for v in 0..50 {
        store.put(key.into(), entry(key, v, 2000));
    }
    store.remove(key);
    store.put("example.com/r".into(), entry("example.com/r", 1, 10));
    store.flush();
    assert!(store.get(key).is_none());
    assert!(!store.file_path(key).exists());
    for v in 0..50 {
        store.put(key.into(), entry(key, v, 2000));
    }
    store.flush();
    assert_eq!(check_complete(&store.get(key).unwrap()), 49);
    assert_eq!(files(dir.path(), ".tmp").len(), 0);
}

/// The environment variable that turns [`kill_child`] into the writer that gets killed.
const KILL_DIR: &str = "LINGJING_TEST_DISK_KILL_DIR";
const DURABLE: &str = "lingjing-test: durable";
const KEYS: u64 = 64;

fn kill_key(i: u64) -> String {
    format!("example.com/stream/{}", i % KEYS)
}

#[test]
fn kill_9_in_the_middle_of_writes_leaves_only_complete_entries() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args([
                "kill_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the writer");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let durable = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains(DURABLE));
        assert!(durable, "the writer acknowledged nothing");
        std::thread::sleep(Duration::from_millis(150 + 100 * round));
        child.kill().expect("kill -9 the writer"); // SIGKILL
        let status = child.wait().expect("reap the writer");
        assert!(!status.success());

        let store = open(dir.path());
        assert!(files(dir.path(), ".tmp").is_empty());
        let report = store.startup();
        assert_eq!(
            report.corrupt_removed, 0,
            "a renamed file was torn: {report:?}"
        );
        assert_eq!(report.entries, KEYS, "{report:?}");
        let mut newer = 0;
        for i in 0..KEYS {
            let key = kill_key(i);
            let e = store.get(&key).unwrap_or_else(|| panic!("{key} lost"));
            let version = check_complete(&e);
            assert_eq!(version % KEYS, i, "{key} holds another key's entry");
            if version >= KEYS {
                newer += 1;
            }
        }
        assert_eq!(store.corrupt_entries(), 0);
        assert!(newer > 0, "no write landed after the acknowledged ones");
        eprintln!(
            "kill -9 round {round}: {newer} of {KEYS} entries rewritten, {} torn temp files removed",
            report.temp_removed
        );
    }
}

/// Not a test of its own: run by `kill_9_in_the_middle_of_writes_leaves_only_complete_entries`
/// in a child process, it writes every key once, says so, then rewrites them forever until
/// it is killed.
#[test]
#[ignore = "the writer killed by kill_9_in_the_middle_of_writes_leaves_only_complete_entries"]
fn kill_child() {
    use std::io::Write;
    let Some(dir) = std::env::var_os(KILL_DIR) else {
        return;
    };
    let store = open(Path::new(&dir));
    let mut rng = StdRng::seed_from_u64(11);
    for i in 0..KEYS {
        let key = kill_key(i);
        store.put(key.clone(), entry(&key, i, rng.random_range(0..300_000)));
    }
    store.flush();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{DURABLE}").unwrap();
    out.flush().unwrap();
    for version in KEYS.. {
        let key = kill_key(version);
        store.put(
            key.clone(),
            entry(&key, version, rng.random_range(0..300_000)),
        );
        if version % 16 == 0 {
            store.flush();
        }
    }
}

fn hybrid(dir: &Path, memory: u64) -> HybridStore {
    HybridStore::new(
        MemoryStore::new(memory),
        DiskStore::open(dir, options(1 << 30)).unwrap(),
    )
}

#[test]
fn hybrid_serves_from_disk_promotes_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("example.com/h/{i}")).collect();
    {
        // Memory for a few entries only.
        let store = hybrid(dir.path(), 64 << 10);
        for (i, k) in keys.iter().enumerate() {
            store.put(k.clone(), entry(k, i as u64, 8_000));
        }
        store.disk().flush();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(check_complete(&store.get(k).unwrap()), i as u64);
        }
        let (memory_bytes, _) = store.memory().usage();
        assert!(memory_bytes <= 64 << 10);
        assert_eq!(store.disk().usage().1, 100);
        assert_eq!(store.usage().1, 100);
        assert_eq!(store.keys().len(), 100);
        store.remove(&keys[0]);
        assert!(store.get(&keys[0]).is_none());
        assert!(!store.disk().file_path(&keys[0]).exists());
    }
    let store = hybrid(dir.path(), 64 << 20);
    assert_eq!(store.memory().usage().1, 0);
    assert!(store.get(&keys[0]).is_none());
    for (i, k) in keys.iter().enumerate().skip(1) {
        assert_eq!(check_complete(&store.get(k).unwrap()), i as u64);
    }
    // Promoted: now answered by memory.
    assert!(store.memory().get(&keys[5]).is_some());
    assert_eq!(store.keys().len(), 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_reads_on_a_multi_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let key = "example.com/async";
    {
        let store = hybrid(dir.path(), 1 << 20);
        store.put(key.into(), entry(key, 3, 100_000));
    }
    let store = Arc::new(hybrid(dir.path(), 1 << 20));
    assert_eq!(check_complete(&store.get_async(key).await.unwrap()), 3);
    store.memory().remove(key);
    // The synchronous read, inside the runtime (block_in_place).
    let s = store.clone();
    let got = tokio::spawn(async move { s.get(key) }).await.unwrap();
    assert_eq!(check_complete(&got.unwrap()), 3);
    assert!(store.get_async("example.com/none").await.is_none());
}

#[test]
fn hybrid_promotions_never_resurrect_replaced_or_removed_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(hybrid(dir.path(), 256 << 10));
    let writers = 2u64;
    let per_writer = 16u64;
    let rounds = 300u64;
    std::thread::scope(|s| {
        for w in 0..writers {
            let store = store.clone();
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(w);
                for round in 0..rounds {
                    let k = format!("example.com/c/{w}/{}", round % per_writer);
                    if rng.random_range(0..5) == 0 {
                        store.remove(&k);
                    } else {
                        store.put(k.clone(), entry(&k, round, rng.random_range(0..20_000)));
                    }
                }
            });
        }
        for r in 0..2u64 {
            let store = store.clone();
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + r);
                for _ in 0..3000 {
                    let k = format!(
                        "example.com/c/{}/{}",
                        rng.random_range(0..writers),
                        rng.random_range(0..per_writer)
                    );
                    if let Some(e) = store.get(&k) {
                        check_complete(&e);
                    }
                }
            });
        }
    });
    store.disk().flush();
    // Replay each writer's last operation per key.
    for w in 0..writers {
        let mut rng = StdRng::seed_from_u64(w);
        let mut last: Vec<Option<u64>> = vec![None; per_writer as usize];
        for round in 0..rounds {
            let slot = (round % per_writer) as usize;
            if rng.random_range(0..5) == 0 {
                last[slot] = None;
            } else {
                let _len: usize = rng.random_range(0..20_000);
                last[slot] = Some(round);
            }
        }
        for (i, expected) in last.iter().enumerate() {
            let k = format!("example.com/c/{w}/{i}");
            let in_memory = store.memory().get(&k).map(|e| check_complete(&e));
            let on_disk = store.disk().get(&k).map(|e| check_complete(&e));
            assert_eq!(on_disk, *expected, "{k} on disk");
            assert!(
                in_memory.is_none() || in_memory == *expected,
                "{k}: memory holds {in_memory:?}, expected {expected:?}"
            );
        }
    }
}

#[test]
fn hybrid_open_tags_and_meta_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = HybridStore::open(1 << 20, dir.path(), 8 << 20).unwrap();
    store.put("example.com/o".into(), entry("example.com/o", 1, 10));
    store.disk().flush();
    assert!(store.disk().file_path("example.com/o").exists());
    assert_eq!(store.tags("example.com/o").unwrap(), ["product", "v1"]);
    store.memory().remove("example.com/o");
    assert_eq!(store.tags("example.com/o").unwrap(), ["product", "v1"]);
    assert!(store.tags("example.com/none").is_none());
    // Meta values survive a restart.
    assert!(store.disk().meta("applied_version").is_none());
    store.disk().set_meta("applied_version", "42").unwrap();
    assert!(store.disk().set_meta("../x", "1").is_err());
    drop(store);
    let store = HybridStore::open(1 << 20, dir.path(), 8 << 20).unwrap();
    assert_eq!(store.disk().meta("applied_version").as_deref(), Some("42"));
    assert_eq!(store.disk().startup().entries, 1);
}
