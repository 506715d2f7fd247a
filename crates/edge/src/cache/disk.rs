//! The disk tier: cache entries as checksummed files under one directory, bounded in size
//! by an S3-FIFO eviction policy, surviving restarts and crashes.
//!
//! # Layout and file format
//!
//! Each primary key is one file, `<dir>/<hh>/<hash>.ent`, where `hash` is the first 128
//! bits of the key's SHA-256 in hex and `hh` its first byte (256 shard directories). The
//! file (integers little-endian):
//!
//! ```text
//! prefix   magic "LJEC" | version u16 | flags u16 (0) | header_len u32 | header_crc u32
//! header   key | vary names | per variant: status, headers (name/value byte pairs),
//!          freshness (durations as secs u64 + nanos u32, times as the same since the
//!          Unix epoch), variant signature, tags, stored_at, body length u64
//! bodies   the variants' bodies, back to back
//! trailer  crc u32: CRC-32 of every byte before it
//! ```
//!
//! `header_crc` covers the first 12 bytes and the header, so the startup scan can check a
//! file's header and its length without reading the bodies; a read checks the trailer CRC
//! over the whole file. Any mismatch (magic, version, lengths, either checksum, a header
//! that does not parse, a key that does not hash to the file's name) makes the file
//! *corrupt*: it is deleted, counted ([`DiskStore::corrupt_entries`]) and never served.
//!
//! # Crash safety
//!
//! A write goes to `<hash>.<gen>.tmp` in the same directory, is optionally fsynced
//! ([`DiskOptions::fsync`]) and renamed over `<hash>.ent`, so a crash (`kill -9`, power
//! loss) leaves either the old or the new complete file; leftover temp files are deleted
//! by the next [`DiskStore::open`]. Without fsync a power loss can leave a renamed file
//! with missing data: the checksum catches it. A `LOCK` file (`flock`) keeps a second
//! process out of the directory; the kernel drops the lock when the process dies.
//!
//! # Concurrency
//!
//! The index (key hash -> key, size, generation) and the eviction policy sit behind one
//! mutex held only for in-memory work and the rename/unlink of single files, never while
//! a file is read or written. [`DiskStore::put`] only queues the entry: one background
//! writer thread writes the files in order, and until then [`DiskStore::get`] answers
//! from the queue. The queue is bounded ([`DiskOptions::max_pending_bytes`]); a put that
//! does not fit is dropped *and removes the key's older copy*, so the disk tier never
//! holds a version older than one it was given. [`DiskStore::remove`] deletes the file
//! at once (a purge survives a crash that follows it). `get` and `remove` do file I/O on
//! the calling thread; on a multi-threaded Tokio runtime they run it in
//! `block_in_place`, so they do not stall the runtime's other tasks.
//!
//! # Purge index
//!
//! Next to the index, a [`PurgeIndex`] files every indexed key under its service's host
//! and under each of its tags (from the file headers at `open`, then wherever the index
//! changes: writes, removals, evictions, corrupt files), so purges and invalidations read
//! one bucket instead of every key; [`DiskStore::host_keys`] and [`DiskStore::tag_keys`]
//! add the matching queued puts (the queue is bounded).
//!
//! # Eviction
//!
//! [`S3Fifo`] ([`super::eviction`]), weighted by bytes, decides which files leave.
//! Each file counts its size rounded up to 4 KiB (a filesystem block).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use super::eviction::S3Fifo;
use super::index::{PurgeIndex, entry_tags};
use super::policy::Freshness;
use super::store::{CachedResponse, Entry, Storage};

const MAGIC: [u8; 4] = *b"LJEC";
const VERSION: u16 = 1;
const PREFIX_LEN: usize = 16;
const TRAILER_LEN: usize = 4;
/// Largest header accepted when reading (a sanity bound against garbage lengths).
const MAX_HEADER_LEN: usize = 16 << 20;
/// Space accounting unit: a file takes at least one filesystem block.
const BLOCK: u64 = 4096;
const ENTRY_SUFFIX: &str = ".ent";
const TEMP_SUFFIX: &str = ".tmp";

/// How a [`DiskStore`] behaves.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// Most bytes of files kept (each file rounded up to 4 KiB).
    pub capacity_bytes: u64,
    /// Fsync each file before renaming it into place: entries then survive a power loss,
    /// not only a process crash. Costs a disk flush per write.
    pub fsync: bool,
    /// Most bytes of entries waiting for the writer thread; a put beyond it is dropped.
    pub max_pending_bytes: u64,
    /// Largest entry stored (its in-memory weight); larger ones are not written.
    pub max_entry_bytes: u64,
}

impl DiskOptions {
    /// Defaults for a tier of `capacity_bytes`: fsync on, 64 MiB of queued writes, entries
    /// up to an eighth of the capacity.
    pub fn new(capacity_bytes: u64) -> DiskOptions {
        DiskOptions {
            capacity_bytes,
            fsync: true,
            max_pending_bytes: 64 << 20,
            max_entry_bytes: capacity_bytes / 8,
        }
    }
}

/// What [`DiskStore::open`] found in the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartupReport {
    /// Entries indexed.
    pub entries: u64,
    /// Their bytes (rounded up to blocks).
    pub bytes: u64,
    /// Leftover temp files (writes cut by a crash) deleted.
    pub temp_removed: u64,
    /// Corrupt or torn entry files deleted.
    pub corrupt_removed: u64,
    /// Entries evicted because the directory held more than the capacity.
    pub evicted: u64,
}

/// The disk tier. See the module documentation.
pub struct DiskStore {
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    startup: StartupReport,
    /// Holds the directory's `flock` while open.
    _lock: File,
}

struct Shared {
    dir: PathBuf,
    options: DiskOptions,
    state: Mutex<State>,
    corrupt: AtomicU64,
    evictions: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

struct State {
    /// Files on disk.
    index: HashMap<u128, Slot>,
    policy: S3Fifo<u128>,
    /// Puts queued for the writer, newest per key.
    pending: HashMap<u128, Pending>,
    pending_bytes: u64,
    next_gen: u64,
    /// The keys of `index` by host and by tag (rebuilt by `open`, kept in step with
    /// `index` by [`State::file`] and [`State::unfile`]).
    purge: PurgeIndex,
}

struct Slot {
    key: Arc<String>,
    /// The variants' tags (sorted, deduplicated), for purges by tag without a read.
    tags: Box<[String]>,
    /// Generation of the put that wrote the file.
    generation: u64,
}

struct Pending {
    generation: u64,
    key: Arc<String>,
    entry: Arc<Entry>,
    weight: u64,
}

enum Job {
    Write(u128, u64),
    Flush(mpsc::Sender<()>),
}

impl DiskStore {
    /// Opens (creating it if needed) the tier in `dir`: takes the directory's lock, deletes
    /// leftover temp files and corrupt entries, indexes the others from their headers
    /// (bodies are verified when read), evicts down to the capacity and starts the writer
    /// thread. Blocking: call it at startup or from `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>, options: DiskOptions) -> io::Result<DiskStore> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("LOCK"))?;
        lock_dir(&lock, &dir)?;

        let mut report = StartupReport::default();
        let mut found: Vec<(u128, Scanned)> = Vec::new();
        for shard in 0..=255u8 {
            let shard_dir = dir.join(format!("{shard:02x}"));
            fs::create_dir_all(&shard_dir)?;
            for item in fs::read_dir(&shard_dir)? {
                let item = item?;
                let path = item.path();
                let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.ends_with(TEMP_SUFFIX) {
                    remove_file(&path);
                    report.temp_removed += 1;
                    continue;
                }
                let Some(hash) = name
                    .strip_suffix(ENTRY_SUFFIX)
                    .and_then(|h| (h.len() == 32).then(|| u128::from_str_radix(h, 16).ok()))
                    .flatten()
                else {
                    continue;
                };
                let scanned = match scan_file(&path) {
                    Ok(f) if key_hash(&f.key) != hash || shard_of(hash) != shard => {
                        Err(ReadError::Corrupt("misplaced"))
                    }
                    other => other,
                };
                match scanned {
                    Ok(f) => found.push((hash, f)),
                    Err(ReadError::Corrupt(why)) => {
                        tracing::warn!(path = %path.display(), why, "removing a corrupt cache file");
                        remove_file(&path);
                        report.corrupt_removed += 1;
                    }
                    Err(ReadError::NotFound) => {}
                    Err(ReadError::Io(e)) => return Err(e),
                }
            }
        }

        // Oldest first, so that the oldest are evicted first if the directory is too full.
        found.sort_by_key(|f| f.1.modified);
        let mut state = State {
            index: HashMap::with_capacity(found.len()),
            policy: S3Fifo::new(options.capacity_bytes),
            pending: HashMap::new(),
            pending_bytes: 0,
            next_gen: 1,
            purge: PurgeIndex::default(),
        };
        let mut victims = Vec::new();
        for (hash, f) in found {
            state.policy.insert_main(hash, blocks(f.len), &mut victims);
            state.file(
                hash,
                Slot {
                    key: Arc::new(f.key),
                    tags: f.tags,
                    generation: 0,
                },
            );
        }
        for v in victims {
            state.unfile(&v);
            remove_file(&entry_path(&dir, v));
            report.evicted += 1;
        }
        report.entries = state.index.len() as u64;
        report.bytes = state.policy.weight();

        let shared = Arc::new(Shared {
            dir,
            options,
            state: Mutex::new(state),
            corrupt: AtomicU64::new(report.corrupt_removed),
            evictions: AtomicU64::new(report.evicted),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("lingjing-disk-writer".into())
            .spawn(move || writer_loop(&writer_shared, &rx))?;
        Ok(DiskStore {
            shared,
            jobs: Some(tx),
            writer: Some(writer),
            startup: report,
            _lock: lock,
        })
    }

    /// What `open` found.
    pub fn startup(&self) -> StartupReport {
        self.startup
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The file that holds (or would hold) `key`.
    pub fn file_path(&self, key: &str) -> PathBuf {
        entry_path(&self.shared.dir, key_hash(key))
    }

    /// Reads `key`: from the write queue, or from its file (verified). A corrupt file is
    /// deleted, counted and not served.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.get_then(key, |_| {})
    }

    /// [`get`](Self::get), calling `on_current` with the entry while it is still the
    /// current version (no put or remove of the key happened since it was read), under the
    /// index lock: a put or remove that follows cannot be overtaken. The hybrid store
    /// promotes into memory from there.
    pub fn get_then(&self, key: &str, on_current: impl FnOnce(&Arc<Entry>)) -> Option<Arc<Entry>> {
        let hash = key_hash(key);
        let generation = {
            let mut state = self.shared.lock();
            if let Some(p) = state.pending.get(&hash) {
                if p.key.as_str() != key {
                    return None;
                }
                let entry = p.entry.clone();
                on_current(&entry);
                return Some(entry);
            }
            let slot = state.index.get(&hash)?;
            if slot.key.as_str() != key {
                return None;
            }
            let generation = slot.generation;
            state.policy.access(&hash);
            generation
        };
        let path = entry_path(&self.shared.dir, hash);
        let read = match blocking(|| read_file(&path)) {
            Ok((stored_key, _)) if stored_key != key => Err(ReadError::Corrupt("another key")),
            other => other,
        };
        match read {
            Ok((_, entry)) => {
                let entry = Arc::new(entry);
                let state = self.shared.lock();
                if state.is_current(hash, generation) {
                    on_current(&entry);
                }
                Some(entry)
            }
            Err(ReadError::Corrupt(why)) => {
                tracing::warn!(path = %path.display(), why, "a corrupt cache file was not served");
                self.shared.corrupt.fetch_add(1, Ordering::Relaxed);
                self.shared.forget_if_current(hash, generation);
                None
            }
            Err(ReadError::NotFound) => {
                self.shared.forget_if_current(hash, generation);
                None
            }
            Err(ReadError::Io(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cache file read failed");
                None
            }
        }
    }

    /// Queues `entry` to be written under `key`. Never blocks on I/O, except when the
    /// queue is full or the entry too large: then the put is dropped and the key's older
    /// file deleted.
    pub fn put(&self, key: String, entry: Arc<Entry>) {
        let hash = key_hash(&key);
        let weight = entry.weight() as u64;
        let options = &self.shared.options;
        let generation = {
            let mut state = self.shared.lock();
            let replaced = state.pending.get(&hash).map_or(0, |p| p.weight);
            let queued = state.pending_bytes - replaced;
            if weight > options.max_entry_bytes || queued + weight > options.max_pending_bytes {
                drop(state);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.remove_hash(hash);
                return;
            }
            let generation = state.next_gen;
            state.next_gen += 1;
            state.pending_bytes = queued + weight;
            state.pending.insert(
                hash,
                Pending {
                    generation,
                    key: Arc::new(key),
                    entry,
                    weight,
                },
            );
            generation
        };
        if let Some(jobs) = &self.jobs {
            // The writer only stops when the store is dropped.
            let _ = jobs.send(Job::Write(hash, generation));
        }
    }

    /// Removes `key`: cancels a queued write and deletes the file.
    pub fn remove(&self, key: &str) {
        self.remove_hash(key_hash(key));
    }

    fn remove_hash(&self, hash: u128) {
        blocking(|| {
            let mut state = self.shared.lock();
            if let Some(p) = state.pending.remove(&hash) {
                state.pending_bytes -= p.weight;
            }
            state.policy.remove(&hash);
            if state.unfile(&hash).is_some() {
                // Under the lock: the writer cannot rename a file in between.
                remove_file(&entry_path(&self.shared.dir, hash));
            }
        });
    }

    /// Counts a read of `key` served by another tier (for the eviction policy). Skipped when
    /// the index is busy: it is a hint.
    pub fn touch(&self, key: &str) {
        let hash = key_hash(key);
        if let Ok(mut state) = self.shared.state.try_lock() {
            state.policy.access(&hash);
        }
    }

    /// The tags of `key`'s variants (sorted, deduplicated), from the index: no file is
    /// read. For purges by tag.
    pub fn tags(&self, key: &str) -> Option<Vec<String>> {
        let hash = key_hash(key);
        let state = self.shared.lock();
        if let Some(p) = state.pending.get(&hash) {
            return (p.key.as_str() == key).then(|| entry_tags(&p.entry).into_vec());
        }
        let slot = state.index.get(&hash)?;
        (slot.key.as_str() == key).then(|| slot.tags.to_vec())
    }

    /// A small named value kept with the cache (`name`: ASCII letters, digits, `-`, `_`),
    /// such as the snapshot version whose purges the cache reflects. `None` if never set
    /// or unreadable.
    pub fn meta(&self, name: &str) -> Option<String> {
        let path = meta_path(&self.shared.dir, name).ok()?;
        blocking(|| fs::read_to_string(path)).ok()
    }

    /// Sets [`meta`](Self::meta) `name` durably: written to a temp file, fsynced and renamed,
    /// the directory fsynced. Blocking.
    pub fn set_meta(&self, name: &str, value: &str) -> io::Result<()> {
        let path = meta_path(&self.shared.dir, name)?;
        let temp = self.shared.dir.join(format!("meta.{name}{TEMP_SUFFIX}"));
        blocking(|| {
            let mut file = File::create(&temp)?;
            file.write_all(value.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.shared.dir)?.sync_all()
        })
    }

    /// Every key stored or queued.
    pub fn keys(&self) -> Vec<Arc<String>> {
        let state = self.shared.lock();
        let mut keys: Vec<Arc<String>> = state.index.values().map(|s| s.key.clone()).collect();
        keys.extend(
            state
                .pending
                .iter()
                .filter(|(h, _)| !state.index.contains_key(h))
                .map(|(_, p)| p.key.clone()),
        );
        keys
    }

    /// The keys in a host bucket (`key::host_bucket`): from the purge index, plus the
    /// queued puts in that bucket.
    pub fn host_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        let state = self.shared.lock();
        let mut keys = state.purge.host_keys(bucket);
        keys.extend(
            state.pending_keys(|_, k| super::key::key_host_bucket(k).as_deref() == Some(bucket)),
        );
        keys.sort();
        keys.dedup();
        keys
    }

    /// The keys in a tag bucket (`key::tag_bucket`): from the purge index, plus the queued
    /// puts in that bucket.
    pub fn tag_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        let state = self.shared.lock();
        let mut keys = state.purge.tag_keys(bucket);
        keys.extend(state.pending_keys(|entry, k| {
            entry.variants.iter().any(|v| {
                v.tags
                    .iter()
                    .any(|t| super::key::key_tag_bucket(k, t).as_deref() == Some(bucket))
            })
        }));
        keys.sort();
        keys.dedup();
        keys
    }

    /// Keys in the purge index (files on disk whose key is a cache key).
    pub fn indexed_keys(&self) -> usize {
        self.shared.lock().purge.len()
    }

    /// Bytes (rounded up to blocks) and entries on disk; queued writes not included.
    pub fn usage(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.policy.weight(), state.index.len() as u64)
    }

    /// Entries evicted for room since open (those evicted by `open` included).
    pub fn evictions(&self) -> u64 {
        self.shared.evictions.load(Ordering::Relaxed)
    }

    /// Corrupt or torn files found (and deleted) since open, by `open` or by reads.
    pub fn corrupt_entries(&self) -> u64 {
        self.shared.corrupt.load(Ordering::Relaxed)
    }

    /// Puts dropped: the queue was full or the entry too large.
    pub fn dropped_writes(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes that failed (disk full, I/O errors); the key's file is deleted then.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Waits until every put queued before this call is on disk (or dropped). Blocking.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Flush(tx)).is_ok()
        {
            let _ = blocking(|| rx.recv());
        }
    }
}

impl Drop for DiskStore {
    /// Stops the writer after it wrote what was queued.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Storage for DiskStore {
    fn get(&self, key: &str) -> Option<Arc<Entry>> {
        DiskStore::get(self, key)
    }

    fn put(&self, key: String, entry: Arc<Entry>) {
        DiskStore::put(self, key, entry);
    }

    fn remove(&self, key: &str) {
        DiskStore::remove(self, key);
    }

    fn keys(&self) -> Vec<Arc<String>> {
        DiskStore::keys(self)
    }

    fn host_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        DiskStore::host_keys(self, bucket)
    }

    fn tag_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        DiskStore::tag_keys(self, bucket)
    }

    fn usage(&self) -> (u64, u64) {
        DiskStore::usage(self)
    }

    fn evictions(&self) -> u64 {
        DiskStore::evictions(self)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `hash` from the index (and deletes its file) if it is still at `generation`.
    fn forget_if_current(&self, hash: u128, generation: u64) {
        let mut state = self.lock();
        if state.is_current(hash, generation) {
            state.unfile(&hash);
            state.policy.remove(&hash);
            remove_file(&entry_path(&self.dir, hash));
        }
    }

    /// Writes one queued put, if it is still the key's newest.
    fn write(&self, hash: u128, generation: u64) {
        let (key, entry) = {
            let state = self.lock();
            match state.pending.get(&hash) {
                Some(p) if p.generation == generation => (p.key.clone(), p.entry.clone()),
                _ => return,
            }
        };
        let path = entry_path(&self.dir, hash);
        let temp = path.with_file_name(format!("{hash:032x}.{generation}{TEMP_SUFFIX}"));
        let written = write_file(&temp, &key, &entry, self.options.fsync);

        let mut state = self.lock();
        match state.pending.get(&hash) {
            Some(p) if p.generation == generation => {}
            _ => {
                // Removed or replaced while being written.
                drop(state);
                remove_file(&temp);
                return;
            }
        }
        if let Some(p) = state.pending.remove(&hash) {
            state.pending_bytes -= p.weight;
        }
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(path = %temp.display(), error = %e, "cache file write failed");
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                state.unfile(&hash);
                state.policy.remove(&hash);
                remove_file(&path);
                drop(state);
                remove_file(&temp);
                return;
            }
        };
        let mut victims = Vec::new();
        state.policy.insert(hash, blocks(len), &mut victims);
        let mut unlink = Vec::with_capacity(victims.len() + 1);
        if victims.contains(&hash) {
            state.unfile(&hash);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            unlink.push(path);
            unlink.push(temp);
        } else if let Err(e) = fs::rename(&temp, &path) {
            tracing::warn!(path = %path.display(), error = %e, "cache file rename failed");
            self.write_errors.fetch_add(1, Ordering::Relaxed);
            state.unfile(&hash);
            state.policy.remove(&hash);
            unlink.push(path);
            unlink.push(temp);
        } else {
            state.file(
                hash,
                Slot {
                    key,
                    tags: entry_tags(&entry),
                    generation,
                },
            );
        }
        for v in victims {
            if v != hash {
                state.unfile(&v);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                unlink.push(entry_path(&self.dir, v));
            }
        }
        // Only this thread renames files into place, and the evicted keys are out of the
        // index: unlinking after the lock is released cannot hit a newer file.
        drop(state);
        for p in unlink {
            remove_file(&p);
        }
    }
}

impl State {
    /// Indexes a file (replacing the key's previous slot) and its purge entries.
    fn file(&mut self, hash: u128, slot: Slot) {
        self.unfile(&hash);
        self.purge.insert(&slot.key, &slot.tags);
        self.index.insert(hash, slot);
    }

    /// Drops a file from the index and its purge entries.
    fn unfile(&mut self, hash: &u128) -> Option<Slot> {
        let slot = self.index.remove(hash)?;
        self.purge.remove(&slot.key, &slot.tags);
        Some(slot)
    }

    /// The queued puts' keys for which `matches` holds (the queue is bounded by
    /// [`DiskOptions::max_pending_bytes`]).
    fn pending_keys(&self, matches: impl Fn(&Entry, &str) -> bool) -> Vec<Arc<String>> {
        self.pending
            .values()
            .filter(|p| matches(&p.entry, &p.key))
            .map(|p| p.key.clone())
            .collect()
    }

    /// `hash` is on disk at `generation`, with no newer put queued.
    fn is_current(&self, hash: u128, generation: u64) -> bool {
        !self.pending.contains_key(&hash)
            && self
                .index
                .get(&hash)
                .is_some_and(|s| s.generation == generation)
    }
}

fn writer_loop(shared: &Shared, jobs: &mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Write(hash, generation) => shared.write(hash, generation),
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Takes the directory's lock. A process forked by this one (to exec a program) shares the
/// lock until its exec, so a busy lock is retried for a second before giving up.
fn lock_dir(lock: &File, dir: &Path) -> io::Result<()> {
    for _ in 0..100 {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!("{} is in use by another cache", dir.display()),
    ))
}

/// Runs blocking file I/O: in `block_in_place` on a multi-threaded Tokio runtime's worker,
/// directly elsewhere (a current-thread runtime cannot hand its tasks off).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn meta_path(dir: &Path, name: &str) -> io::Result<PathBuf> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad meta name {name:?}"),
        ));
    }
    Ok(dir.join(format!("meta.{name}")))
}

/// The first 128 bits of the key's SHA-256.
pub fn key_hash(key: &str) -> u128 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

fn shard_of(hash: u128) -> u8 {
    (hash >> 120) as u8
}

fn entry_path(dir: &Path, hash: u128) -> PathBuf {
    dir.join(format!("{:02x}", shard_of(hash)))
        .join(format!("{hash:032x}{ENTRY_SUFFIX}"))
}

fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

fn remove_file(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cache file removal failed");
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum ReadError {
    NotFound,
    Corrupt(&'static str),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        match e.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound,
            io::ErrorKind::UnexpectedEof => ReadError::Corrupt("truncated"),
            _ => ReadError::Io(e),
        }
    }
}

fn too_long(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too long"))
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len16(&mut self, n: usize, what: &str) -> io::Result<()> {
        self.u16(u16::try_from(n).map_err(|_| too_long(what))?);
        Ok(())
    }
    fn len32(&mut self, n: usize, what: &str) -> io::Result<()> {
        self.u32(u32::try_from(n).map_err(|_| too_long(what))?);
        Ok(())
    }
    fn bytes16(&mut self, b: &[u8], what: &str) -> io::Result<()> {
        self.len16(b.len(), what)?;
        self.0.extend_from_slice(b);
        Ok(())
    }
    fn bytes32(&mut self, b: &[u8], what: &str) -> io::Result<()> {
        self.len32(b.len(), what)?;
        self.0.extend_from_slice(b);
        Ok(())
    }
    fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.u32(d.subsec_nanos());
    }
    /// Times before the Unix epoch (never produced by a cache) are written as the epoch.
    fn time(&mut self, t: SystemTime) {
        self.duration(t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO));
    }
}

fn encode_header(key: &str, entry: &Entry) -> io::Result<Vec<u8>> {
    let mut e = Encoder(Vec::with_capacity(512));
    e.bytes32(key.as_bytes(), "key")?;
    e.len16(entry.vary.len(), "vary")?;
    for name in &entry.vary {
        e.bytes16(name.as_str().as_bytes(), "vary name")?;
    }
    e.len16(entry.variants.len(), "variants")?;
    for v in &entry.variants {
        e.u16(v.status.as_u16());
        e.len32(v.headers.len(), "headers")?;
        for (name, value) in &v.headers {
            e.bytes16(name.as_str().as_bytes(), "header name")?;
            e.bytes32(value.as_bytes(), "header value")?;
        }
        let f = &v.freshness;
        e.duration(f.lifetime);
        e.duration(f.initial_age);
        e.time(f.stored_at);
        e.duration(f.stale_while_revalidate);
        e.duration(f.stale_if_error);
        e.u8(u8::from(f.must_revalidate));
        e.bytes32(v.variant.as_bytes(), "variant")?;
        e.len32(v.tags.len(), "tags")?;
        for t in &v.tags {
            e.bytes32(t.as_bytes(), "tag")?;
        }
        e.time(v.stored_at);
        e.u64(v.body.len() as u64);
    }
    Ok(e.0)
}

/// Writes `entry` to `path` in the file format; returns the file's length.
fn write_file(path: &Path, key: &str, entry: &Entry, fsync: bool) -> io::Result<u64> {
    let header = encode_header(key, entry)?;
    let header_len = u32::try_from(header.len()).map_err(|_| too_long("header"))?;
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[0..4].copy_from_slice(&MAGIC);
    prefix[4..6].copy_from_slice(&VERSION.to_le_bytes());
    prefix[8..12].copy_from_slice(&header_len.to_le_bytes());
    let mut header_crc = crc32fast::Hasher::new();
    header_crc.update(&prefix[..12]);
    header_crc.update(&header);
    prefix[12..16].copy_from_slice(&header_crc.finalize().to_le_bytes());

    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let parts = [&prefix[..], &header[..]]
        .into_iter()
        .chain(entry.variants.iter().map(|v| &v.body[..]));
    for part in parts {
        crc.update(part);
        out.write_all(part)?;
        len += part.len() as u64;
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    if fsync {
        file.sync_data()?;
    }
    Ok(len + TRAILER_LEN as u64)
}

struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if n > self.buf.len() {
            return Err(ReadError::Corrupt("header overrun"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn bytes16(&mut self) -> Result<&'a [u8], ReadError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn bytes32(&mut self) -> Result<&'a [u8], ReadError> {
        let n = self.u32()?;
        self.take(n as usize)
    }
    fn string32(&mut self) -> Result<String, ReadError> {
        let b = self.bytes32()?;
        String::from_utf8(b.to_vec()).map_err(|_| ReadError::Corrupt("not UTF-8"))
    }
    fn duration(&mut self) -> Result<Duration, ReadError> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(ReadError::Corrupt("nanoseconds"));
        }
        Ok(Duration::new(secs, nanos))
    }
    fn time(&mut self) -> Result<SystemTime, ReadError> {
        UNIX_EPOCH
            .checked_add(self.duration()?)
            .ok_or(ReadError::Corrupt("time"))
    }
}

/// A decoded header: the key, the Vary names, and each variant without its body but with
/// the body's length.
struct Header {
    key: String,
    vary: Vec<HeaderName>,
    variants: Vec<(CachedResponse, u64)>,
}

fn decode_header(buf: &[u8]) -> Result<Header, ReadError> {
    let mut d = Decoder { buf };
    let key = d.string32()?;
    let n = d.u16()?;
    let mut vary = Vec::with_capacity(usize::from(n).min(16));
    for _ in 0..n {
        vary.push(
            HeaderName::from_bytes(d.bytes16()?).map_err(|_| ReadError::Corrupt("vary name"))?,
        );
    }
    let n = d.u16()?;
    let mut variants = Vec::with_capacity(usize::from(n).min(16));
    for _ in 0..n {
        let status =
            StatusCode::from_u16(d.u16()?).map_err(|_| ReadError::Corrupt("status code"))?;
        let count = d.u32()?;
        let mut headers = HeaderMap::with_capacity((count as usize).min(64));
        for _ in 0..count {
            let name = HeaderName::from_bytes(d.bytes16()?)
                .map_err(|_| ReadError::Corrupt("header name"))?;
            let value = HeaderValue::from_bytes(d.bytes32()?)
                .map_err(|_| ReadError::Corrupt("header value"))?;
            headers.append(name, value);
        }
        let freshness = Freshness {
            lifetime: d.duration()?,
            initial_age: d.duration()?,
            stored_at: d.time()?,
            stale_while_revalidate: d.duration()?,
            stale_if_error: d.duration()?,
            must_revalidate: match d.u8()? {
                0 => false,
                1 => true,
                _ => return Err(ReadError::Corrupt("flag")),
            },
        };
        let variant = d.string32()?;
        let count = d.u32()?;
        let mut tags = Vec::with_capacity((count as usize).min(64));
        for _ in 0..count {
            tags.push(d.string32()?);
        }
        let stored_at = d.time()?;
        let body_len = d.u64()?;
        variants.push((
            CachedResponse {
                status,
                headers,
                body: Bytes::new(),
                freshness,
                variant,
                tags,
                stored_at,
            },
            body_len,
        ));
    }
    if !d.buf.is_empty() {
        return Err(ReadError::Corrupt("header length"));
    }
    Ok(Header {
        key,
        vary,
        variants,
    })
}

/// Checks the fixed prefix; returns the header's length.
fn check_prefix(prefix: &[u8; PREFIX_LEN], file_len: u64) -> Result<usize, ReadError> {
    if prefix[0..4] != MAGIC {
        return Err(ReadError::Corrupt("magic"));
    }
    if prefix[4..6] != VERSION.to_le_bytes() || prefix[6..8] != [0, 0] {
        return Err(ReadError::Corrupt("version"));
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&prefix[8..12]);
    let header_len = u32::from_le_bytes(n) as usize;
    if header_len > MAX_HEADER_LEN || (PREFIX_LEN + header_len + TRAILER_LEN) as u64 > file_len {
        return Err(ReadError::Corrupt("header length"));
    }
    Ok(header_len)
}

fn check_header_crc(prefix: &[u8; PREFIX_LEN], header: &[u8]) -> Result<(), ReadError> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&prefix[..12]);
    crc.update(header);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&prefix[12..16]);
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Err(ReadError::Corrupt("header checksum"));
    }
    Ok(())
}

/// The whole file's length implied by the header.
fn expected_len(header_len: usize, header: &Header) -> Option<u64> {
    header
        .variants
        .iter()
        .try_fold((PREFIX_LEN + header_len + TRAILER_LEN) as u64, |acc, v| {
            acc.checked_add(v.1)
        })
}

/// What the startup scan learns from a file's header.
struct Scanned {
    key: String,
    tags: Box<[String]>,
    len: u64,
    modified: SystemTime,
}

/// The startup check of one file: prefix, header checksum and total length (bodies are
/// not read).
fn scan_file(path: &Path) -> Result<Scanned, ReadError> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let len = meta.len();
    let mut prefix = [0u8; PREFIX_LEN];
    file.read_exact(&mut prefix)?;
    let header_len = check_prefix(&prefix, len)?;
    let mut header = vec![0u8; header_len];
    file.read_exact(&mut header)?;
    check_header_crc(&prefix, &header)?;
    let decoded = decode_header(&header)?;
    if expected_len(header_len, &decoded) != Some(len) {
        return Err(ReadError::Corrupt("file length"));
    }
    let mut tags: Vec<String> = decoded
        .variants
        .into_iter()
        .flat_map(|(v, _)| v.tags)
        .collect();
    tags.sort();
    tags.dedup();
    Ok(Scanned {
        key: decoded.key,
        tags: tags.into(),
        len,
        modified: meta.modified().unwrap_or(UNIX_EPOCH),
    })
}

/// Reads and verifies a whole file; returns the key and the entry (the bodies share the
/// file's buffer).
fn read_file(path: &Path) -> Result<(String, Entry), ReadError> {
    decode_file(Bytes::from(fs::read(path)?))
}

fn decode_file(buf: Bytes) -> Result<(String, Entry), ReadError> {
    let len = buf.len();
    if len < PREFIX_LEN + TRAILER_LEN {
        return Err(ReadError::Corrupt("truncated"));
    }
    let mut prefix = [0u8; PREFIX_LEN];
    prefix.copy_from_slice(&buf[..PREFIX_LEN]);
    let header_len = check_prefix(&prefix, len as u64)?;
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&buf[len - TRAILER_LEN..]);
    if crc32fast::hash(&buf[..len - TRAILER_LEN]) != u32::from_le_bytes(stored) {
        return Err(ReadError::Corrupt("checksum"));
    }
    let header_bytes = &buf[PREFIX_LEN..PREFIX_LEN + header_len];
    check_header_crc(&prefix, header_bytes)?;
    let header = decode_header(header_bytes)?;
    if expected_len(header_len, &header) != Some(len as u64) {
        return Err(ReadError::Corrupt("file length"));
    }
    let mut offset = PREFIX_LEN + header_len;
    let mut variants = Vec::with_capacity(header.variants.len());
    for (mut response, body_len) in header.variants {
        // Fits: the lengths add up to the file's.
        let end = offset + body_len as usize;
        response.body = buf.slice(offset..end);
        offset = end;
        variants.push(Arc::new(response));
    }
    Ok((
        header.key,
        Entry {
            vary: header.vary,
            variants,
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Entry {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("x-bin", HeaderValue::from_bytes(b"\x80\xff ok").unwrap());
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let response = |variant: &str, body: &'static [u8]| CachedResponse {
            status: StatusCode::OK,
            headers: headers.clone(),
            body: Bytes::from_static(body),
            freshness: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::from_millis(1500),
                stored_at: at,
                stale_while_revalidate: Duration::from_secs(5),
                stale_if_error: Duration::ZERO,
                must_revalidate: true,
            },
            variant: variant.to_owned(),
            tags: vec!["t1".into(), "t2".into()],
            stored_at: at,
        };
        Entry {
            vary: vec![HeaderName::from_static("accept-encoding")],
            variants: vec![
                Arc::new(response("gzip", b"compressed")),
                Arc::new(response("", b"")),
            ],
        }
    }

    fn encode(key: &str, entry: &Entry) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = write_file(&path, key, entry, false).unwrap();
        let buf = fs::read(&path).unwrap();
        assert_eq!(buf.len() as u64, len);
        buf
    }

    #[test]
    fn entries_round_trip_through_the_file_format() {
        let entry = sample();
        let buf = encode("example.com/a?b", &entry);
        let (key, back) = decode_file(Bytes::from(buf)).unwrap();
        assert_eq!(key, "example.com/a?b");
        assert_eq!(back.vary, entry.vary);
        assert_eq!(back.variants.len(), 2);
        for (a, b) in back.variants.iter().zip(&entry.variants) {
            assert_eq!(a.status, b.status);
            assert_eq!(a.headers, b.headers);
            assert_eq!(a.body, b.body);
            assert_eq!(a.freshness, b.freshness);
            assert_eq!(a.variant, b.variant);
            assert_eq!(a.tags, b.tags);
            assert_eq!(a.stored_at, b.stored_at);
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_detected() {
        let buf = encode("example.com/x", &sample());
        for cut in 0..buf.len() {
            assert!(
                decode_file(Bytes::copy_from_slice(&buf[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    decode_file(Bytes::from(bad)).is_err(),
                    "bit {bit} of byte {i}"
                );
            }
        }
    }
}
