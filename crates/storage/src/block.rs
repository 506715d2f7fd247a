//! Blocks on a storage node's disk: content-addressed files under one root directory.
//!
//! A block's id ([`BlockId`]) is the SHA-256 of its bytes, and its file is
//! `ROOT/blocks/ab/cd/abcd…` (the id in hex, fanned out by its first two bytes). The
//! checksum is the name: [`BlockStore::put`] refuses bytes that do not hash to the id, and
//! [`BlockStore::get`] hashes what it read before returning it, so a block that rotted on
//! disk is never served; it is moved to `ROOT/quarantine/` and reported as
//! [`BlockError::Corrupt`], and the caller reads another replica.
//!
//! **Durability:** a block is written to `ROOT/tmp/`, fsynced, renamed into place and its
//! directory fsynced before `put` returns, so an acknowledged block survives a crash or
//! power loss; a crash mid-write leaves only a temporary file, removed at the next
//! [`BlockStore::open`]. Writing a block that is already present is a no-op (same id,
//! same bytes), so replicated and retried writes are idempotent.
//!
//! The store's methods do blocking file I/O: call them from `spawn_blocking`.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A block's id: the SHA-256 of its bytes, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId([u8; 32]);

impl BlockId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> BlockId {
        BlockId(Sha256::digest(data).into())
    }

    /// The id of the concatenation of `parts` (hashed in place, nothing joined).
    pub fn of_parts(parts: &[bytes::Bytes]) -> BlockId {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        BlockId(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({self})")
    }
}

impl FromStr for BlockId {
    type Err = BlockError;

    /// Exactly 64 lowercase hex digits (one spelling per id: ids name files).
    fn from_str(s: &str) -> Result<BlockId, BlockError> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(BlockError::BadId(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BlockError::BadId(s.to_owned()))?;
        Ok(BlockId(out))
    }
}

/// Why a block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(
        "{0:?} is not a block id: it must be the SHA-256 of the block, 64 lowercase hex digits"
    )]
    BadId(String),
    #[error(
        "the block's bytes hash to {actual}, not to the id {id}: refused (corrupted in transit?)"
    )]
    Mismatch { id: BlockId, actual: BlockId },
    #[error("block {id} failed its checksum on disk and was quarantined; read another replica")]
    Corrupt { id: BlockId },
    #[error("block of {len} bytes is larger than this node's limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error(
        "this node's disk is full: {free} bytes free, it keeps {reserve} free; write the block to another node"
    )]
    Full { free: u64, reserve: u64 },
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`BlockStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The block was written (and is durable).
    Stored,
    /// The block was already here.
    Present,
}

/// Free space a store keeps on its file system unless told otherwise (`lingjing storage
/// --reserve-mb`).
pub const DEFAULT_RESERVE_BYTES: u64 = 256 << 20;

/// What [`BlockStore::delete_if_older`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// Deleted; its length.
    Deleted(u64),
    /// Written since the cutoff: kept.
    Kept,
    /// Not here.
    Absent,
}

/// What [`BlockStore::scrub_page`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrubbed {
    pub checked: u64,
    pub bytes: u64,
    /// Found corrupt (and quarantined).
    pub corrupt: u64,
    /// The last block of the page: where the next page starts (`None`: the end).
    pub last: Option<BlockId>,
}

/// A block as [`BlockStore::list`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub id: BlockId,
    pub len: u64,
    /// When it was last written (or written again).
    pub modified: SystemTime,
}

/// The store's size, for heartbeats and `lingjing storage status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStatus {
    pub blocks: u64,
    /// Bytes of block data held.
    pub used_bytes: u64,
    /// Bytes still available to this node on its file system.
    pub free_bytes: u64,
    /// The file system's size.
    pub total_bytes: u64,
    /// Blocks found corrupt and quarantined since the node started.
    pub quarantined: u64,
    /// Writes refused since the node started because the disk was full.
    #[serde(default)]
    pub refused_full: u64,
}

/// The blocks under one root directory.
pub struct BlockStore {
    root: PathBuf,
    max_block_bytes: u64,
    blocks: AtomicU64,
    used_bytes: AtomicU64,
    quarantined: AtomicU64,
    /// Free bytes the store leaves on its file system: a write that would go below is
    /// refused (`BlockError::Full`), so a full disk sends writes to other nodes.
    reserve_bytes: AtomicU64,
    /// Writes refused because the disk was full.
    refused_full: AtomicU64,
    /// Held while a block is renamed into place or removed, so the counts stay exact
    /// when the same block is written, deleted or quarantined concurrently.
    placing: Mutex<()>,
}

impl BlockStore {
    /// Opens (creating if need be) the store at `root`: removes temporary files a crash
    /// left behind and counts the blocks held. Blocks over `max_block_bytes` are refused.
    pub fn open(root: &Path, max_block_bytes: u64) -> Result<BlockStore, BlockError> {
        for dir in ["blocks", "tmp", "quarantine"] {
            fs::create_dir_all(root.join(dir))?;
        }
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        let (mut blocks, mut used) = (0u64, 0u64);
        for fan1 in fs::read_dir(root.join("blocks"))? {
            let fan1 = fan1?.path();
            if !fan1.is_dir() {
                continue;
            }
            for fan2 in fs::read_dir(&fan1)? {
                let fan2 = fan2?.path();
                if !fan2.is_dir() {
                    continue;
                }
                for file in fs::read_dir(&fan2)? {
                    let file = file?;
                    let name = file.file_name();
                    if name.to_str().is_some_and(|n| n.parse::<BlockId>().is_ok()) {
                        blocks += 1;
                        used += file.metadata()?.len();
                    }
                }
            }
        }
        Ok(BlockStore {
            root: root.to_owned(),
            max_block_bytes,
            blocks: AtomicU64::new(blocks),
            used_bytes: AtomicU64::new(used),
            quarantined: AtomicU64::new(0),
            reserve_bytes: AtomicU64::new(DEFAULT_RESERVE_BYTES),
            refused_full: AtomicU64::new(0),
            placing: Mutex::new(()),
        })
    }

    /// Sets the free space kept on the file system (writes that would leave less are
    /// refused).
    pub fn set_reserve_bytes(&self, bytes: u64) {
        self.reserve_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The largest block accepted.
    pub fn max_block_bytes(&self) -> u64 {
        self.max_block_bytes
    }

    fn path(&self, id: &BlockId) -> PathBuf {
        let hex = id.to_string();
        self.root
            .join("blocks")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    /// Stores `data` as block `id`, durably, after checking that it hashes to `id`.
    pub fn put(&self, id: &BlockId, data: &[u8]) -> Result<Put, BlockError> {
        let len = data.len() as u64;
        if len > self.max_block_bytes {
            return Err(BlockError::TooLarge {
                len,
                limit: self.max_block_bytes,
            });
        }
        let actual = BlockId::of(data);
        if actual != *id {
            return Err(BlockError::Mismatch { id: *id, actual });
        }
        let path = self.path(id);
        if fs::metadata(&path).is_ok_and(|m| m.len() == len) {
            // Written again: a new object needs it now. Its time is renewed (under the
            // lock garbage collection deletes under), so a collection that found it
            // unreferenced and old does not take it (`delete_if_older`).
            let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
            match File::options().write(true).open(&path) {
                Ok(f) => {
                    f.set_modified(SystemTime::now())?;
                    return Ok(Put::Present);
                }
                // Deleted meanwhile: write it below.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let reserve = self.reserve_bytes.load(Ordering::Relaxed);
        let (free, total) = space(&self.root);
        // (0, 0): the file system's size is unknown; let the write find out.
        if total > 0 && free < reserve.saturating_add(len) {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(block = %id, free, reserve, "disk full: block refused");
            return Err(BlockError::Full { free, reserve });
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{id}.{:016x}", rand::random::<u64>()));
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        let dir = path.parent().unwrap_or(&self.root);
        let placed = (|| {
            fs::create_dir_all(dir)?;
            let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
            // A copy of another length (a torn write from before) is replaced.
            let replaced = fs::metadata(&path).ok().map(|m| m.len());
            fs::rename(&tmp, &path)?;
            match replaced {
                Some(old) => {
                    self.used_bytes.fetch_sub(old, Ordering::Relaxed);
                }
                None => {
                    self.blocks.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.used_bytes.fetch_add(len, Ordering::Relaxed);
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        // The rename is durable once the directory is.
        File::open(dir)?.sync_all()?;
        Ok(Put::Stored)
    }

    /// Block `id`'s bytes, checked against its id; `None` when it is not here. A block
    /// that fails the check is quarantined and answered [`BlockError::Corrupt`].
    pub fn get(&self, id: &BlockId) -> Result<Option<Vec<u8>>, BlockError> {
        let Some((data, path)) = self.read(id)? else {
            return Ok(None);
        };
        if BlockId::of(&data) != *id {
            self.quarantine(id, &path);
            return Err(BlockError::Corrupt { id: *id });
        }
        Ok(Some(data))
    }

    /// Block `id`'s bytes as the disk holds them, not checked: for a reader that hashes
    /// them itself (the gateway does, and asks [`BlockStore::get`] to check and quarantine
    /// the copy when they do not match).
    pub fn get_unchecked(&self, id: &BlockId) -> Result<Option<Vec<u8>>, BlockError> {
        Ok(self.read(id)?.map(|(data, _)| data))
    }

    /// The file of block `id` read whole (at most one byte past the block limit), and its
    /// path; `None` when it is not here.
    fn read(&self, id: &BlockId) -> Result<Option<(Vec<u8>, PathBuf)>, BlockError> {
        let path = self.path(id);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Read at most one byte past the limit: a longer file is corrupt, not a reason to
        // fill memory.
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut data =
            Vec::with_capacity(usize::try_from(size.min(self.max_block_bytes + 1)).unwrap_or(0));
        Read::by_ref(&mut file)
            .take(self.max_block_bytes + 1)
            .read_to_end(&mut data)?;
        Ok(Some((data, path)))
    }

    /// Whether block `id` is here, and its length (not checked: a read checks).
    pub fn len(&self, id: &BlockId) -> Result<Option<u64>, BlockError> {
        match fs::metadata(self.path(id)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes block `id`; `false` when it was not here.
    pub fn delete(&self, id: &BlockId) -> Result<bool, BlockError> {
        let path = self.path(id);
        let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        fs::remove_file(&path)?;
        self.blocks.fetch_sub(1, Ordering::Relaxed);
        self.used_bytes.fetch_sub(len, Ordering::Relaxed);
        Ok(true)
    }

    /// Removes block `id` if its file was last written before `cutoff` (garbage
    /// collection: a block written or written again since then is kept, `Kept`).
    pub fn delete_if_older(&self, id: &BlockId, cutoff: SystemTime) -> Result<Removed, BlockError> {
        let path = self.path(id);
        let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removed::Absent),
            Err(e) => return Err(e.into()),
        };
        if meta.modified()? >= cutoff {
            return Ok(Removed::Kept);
        }
        fs::remove_file(&path)?;
        self.blocks.fetch_sub(1, Ordering::Relaxed);
        self.used_bytes.fetch_sub(meta.len(), Ordering::Relaxed);
        Ok(Removed::Deleted(meta.len()))
    }

    /// Up to `limit` blocks held, in id order, starting after `after`: their ids, lengths
    /// and when each was last written (for garbage collection and scrubbing). Files whose
    /// names are not block ids are skipped.
    pub fn list(&self, after: Option<&BlockId>, limit: usize) -> Result<Vec<Listed>, BlockError> {
        let after_hex = after.map(ToString::to_string);
        let mut out = Vec::new();
        for fan1 in sorted_names(&self.root.join("blocks"))? {
            if after_hex
                .as_deref()
                .is_some_and(|a| fan1.as_str() < &a[0..2])
            {
                continue;
            }
            let dir1 = self.root.join("blocks").join(&fan1);
            for fan2 in sorted_names(&dir1)? {
                let prefix = format!("{fan1}{fan2}");
                if after_hex
                    .as_deref()
                    .is_some_and(|a| prefix.as_str() < &a[0..4])
                {
                    continue;
                }
                let dir2 = dir1.join(&fan2);
                for name in sorted_names(&dir2)? {
                    if after_hex.as_deref().is_some_and(|a| name.as_str() <= a) {
                        continue;
                    }
                    let Ok(id) = name.parse::<BlockId>() else {
                        continue;
                    };
                    let meta = match fs::metadata(dir2.join(&name)) {
                        Ok(m) => m,
                        // Deleted or quarantined meanwhile.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    };
                    out.push(Listed {
                        id,
                        len: meta.len(),
                        modified: meta.modified()?,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Scrubs up to `limit` blocks after `after` (in id order): reads each whole and checks
    /// it against its id, quarantining a corrupt one as a read would.
    pub fn scrub_page(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Scrubbed, BlockError> {
        let mut out = Scrubbed::default();
        for listed in self.list(after, limit)? {
            out.last = Some(listed.id);
            match self.get(&listed.id) {
                Ok(Some(data)) => {
                    out.checked += 1;
                    out.bytes += data.len() as u64;
                }
                // Deleted meanwhile.
                Ok(None) => {}
                Err(BlockError::Corrupt { .. }) => {
                    out.checked += 1;
                    out.corrupt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Moves a corrupt block out of the way (kept for inspection, never served).
    fn quarantine(&self, id: &BlockId, path: &Path) {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let to = self.root.join("quarantine").join(format!("{id}.{stamp}"));
        let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        let len = fs::metadata(path).map(|m| m.len()).ok();
        match fs::rename(path, &to) {
            Ok(()) => {
                self.blocks.fetch_sub(1, Ordering::Relaxed);
                self.used_bytes
                    .fetch_sub(len.unwrap_or(0), Ordering::Relaxed);
            }
            Err(e) => tracing::error!(block = %id, error = %e, "cannot quarantine a corrupt block"),
        }
        self.quarantined.fetch_add(1, Ordering::Relaxed);
        tracing::error!(block = %id, to = %to.display(), "block failed its checksum: quarantined");
    }

    /// Counts and space.
    pub fn status(&self) -> StoreStatus {
        let (free_bytes, total_bytes) = space(&self.root);
        StoreStatus {
            blocks: self.blocks.load(Ordering::Relaxed),
            used_bytes: self.used_bytes.load(Ordering::Relaxed),
            free_bytes,
            total_bytes,
            quarantined: self.quarantined.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
        }
    }
}

/// The entries of `dir`, by name (only names that are UTF-8); none when it is gone.
fn sorted_names(dir: &Path) -> Result<Vec<String>, BlockError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Free and total bytes of the file system holding `root` (0, 0 when unknown).
#[cfg(unix)]
fn space(root: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(root) {
        Ok(s) => (
            s.f_bavail.saturating_mul(s.f_frsize),
            s.f_blocks.saturating_mul(s.f_frsize),
        ),
        Err(_) => (0, 0),
    }
}

#[cfg(not(unix))]
fn space(_root: &Path) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlockStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path(), 1 << 20).expect("open");
        (dir, store)
    }

    #[test]
    fn ids_have_one_spelling() {
        let id = BlockId::of(b"abc");
        assert_eq!(
            id.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.to_string().parse::<BlockId>().expect("parses"), id);
        for bad in [
            "",
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
            "../../../../etc/passwd",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag",
        ] {
            assert!(bad.parse::<BlockId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_block_round_trips_and_is_counted_once() {
        let (_dir, store) = store();
        let data = b"hello block".to_vec();
        let id = BlockId::of(&data);
        assert_eq!(store.put(&id, &data).expect("put"), Put::Stored);
        assert_eq!(store.put(&id, &data).expect("put again"), Put::Present);
        assert_eq!(store.get(&id).expect("get"), Some(data.clone()));
        let status = store.status();
        assert_eq!((status.blocks, status.used_bytes), (1, data.len() as u64));
        assert!(store.delete(&id).expect("delete"));
        assert!(!store.delete(&id).expect("delete again"));
        assert_eq!(store.get(&id).expect("get"), None);
        assert_eq!((store.status().blocks, store.status().used_bytes), (0, 0));
    }

    #[test]
    fn bytes_that_do_not_hash_to_the_id_are_refused() {
        let (dir, store) = store();
        let id = BlockId::of(b"the real bytes");
        let err = store.put(&id, b"other bytes").expect_err("refused");
        assert!(matches!(err, BlockError::Mismatch { .. }), "{err}");
        assert_eq!(store.get(&id).expect("get"), None);
        assert_eq!(store.status().blocks, 0);
        let big = vec![7u8; (1 << 20) + 1];
        let err = store.put(&BlockId::of(&big), &big).expect_err("too large");
        assert!(matches!(err, BlockError::TooLarge { .. }), "{err}");
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn a_block_that_rotted_on_disk_is_quarantined_not_served() {
        let (dir, store) = store();
        let data = vec![42u8; 4096];
        let id = BlockId::of(&data);
        store.put(&id, &data).expect("put");
        // Flip one byte on disk.
        let path = store.path(&id);
        let mut on_disk = fs::read(&path).expect("read");
        on_disk[100] ^= 1;
        fs::write(&path, on_disk).expect("write");

        let err = store.get(&id).expect_err("corrupt");
        assert!(matches!(err, BlockError::Corrupt { .. }), "{err}");
        assert_eq!(
            store.get(&id).expect("get"),
            None,
            "gone from the served set"
        );
        let status = store.status();
        assert_eq!((status.blocks, status.quarantined), (0, 1));
        assert_eq!(
            fs::read_dir(dir.path().join("quarantine"))
                .expect("dir")
                .count(),
            1
        );
        // A good copy can be written back.
        assert_eq!(store.put(&id, &data).expect("repair"), Put::Stored);
        assert_eq!(store.get(&id).expect("get"), Some(data));
    }

    #[test]
    fn reopening_counts_what_is_held_and_drops_torn_temporary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = BlockStore::open(dir.path(), 1 << 20).expect("open");
            for i in 0..5u8 {
                let data = vec![i; 100 + usize::from(i)];
                store.put(&BlockId::of(&data), &data).expect("put");
            }
        }
        fs::write(dir.path().join("tmp").join("torn"), b"half a block").expect("torn");
        let store = BlockStore::open(dir.path(), 1 << 20).expect("reopen");
        let status = store.status();
        assert_eq!((status.blocks, status.used_bytes), (5, 510));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
        assert!(status.total_bytes >= status.free_bytes);
    }

    #[test]
    fn listing_pages_through_every_block_in_id_order() {
        let (_dir, store) = store();
        let mut ids: Vec<BlockId> = (0..50u32)
            .map(|i| {
                let data = i.to_be_bytes();
                let id = BlockId::of(&data);
                store.put(&id, &data).expect("put");
                id
            })
            .collect();
        ids.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list(after.as_ref(), 7).expect("list");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 7);
            after = page.last().map(|l| l.id);
            seen.extend(page.iter().map(|l| (l.id, l.len)));
        }
        assert_eq!(seen, ids.iter().map(|id| (*id, 4)).collect::<Vec<_>>());
    }

    #[test]
    fn only_blocks_older_than_the_cutoff_are_collected_and_a_rewrite_renews_one() {
        let (_dir, store) = store();
        let data = b"collect me".to_vec();
        let id = BlockId::of(&data);
        store.put(&id, &data).expect("put");
        let before = SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(
            store.delete_if_older(&id, before).expect("gc"),
            Removed::Kept
        );
        // Age the file, then write the same block again: it is renewed, not collected.
        let file = File::options()
            .write(true)
            .open(store.path(&id))
            .expect("open");
        file.set_modified(before - std::time::Duration::from_secs(60))
            .expect("age");
        assert_eq!(store.put(&id, &data).expect("again"), Put::Present);
        assert_eq!(
            store.delete_if_older(&id, before).expect("gc"),
            Removed::Kept
        );
        file.set_modified(before - std::time::Duration::from_secs(60))
            .expect("age");
        assert_eq!(
            store.delete_if_older(&id, before).expect("gc"),
            Removed::Deleted(data.len() as u64)
        );
        assert_eq!(
            store.delete_if_older(&id, before).expect("gc"),
            Removed::Absent
        );
        assert_eq!(store.status().blocks, 0);
        assert_eq!(store.status().used_bytes, 0);
    }
}
