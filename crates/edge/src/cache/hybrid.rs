//! The two-tier store: hot entries in memory ([`MemoryStore`], TinyLFU), every entry on
//! local disk ([`DiskStore`], S3-FIFO), each tier with its own size limit.
//!
//! The disk tier is inclusive and written through: a put goes to both (the disk write is
//! queued for the disk's writer thread), so the disk holds what memory holds plus what
//! memory had to evict, and it all survives a restart. A read tries memory, then disk; a
//! disk hit is promoted into memory. A memory hit is counted by the disk tier's policy
//! ([`DiskStore::touch`]) so that hot entries stay on disk too.
//!
//! Ordering: `put` queues the disk write before it updates memory, `remove` removes from
//! disk before memory, and a promotion happens under the disk index lock only while the
//! entry read is still the current version. So a promotion can never bring back an entry
//! that a concurrent put replaced or a purge removed.
//!
//! Blocking: a memory hit never touches the disk. [`Storage::get`] reads the disk on a
//! memory miss on the calling thread (inside `block_in_place` on a multi-threaded Tokio
//! runtime); [`HybridStore::get_async`] does it on the blocking pool instead.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::disk::{DiskOptions, DiskStore};
use super::store::{Entry, MemoryStore, Storage};

/// Memory in front of disk. See the module documentation.
pub struct HybridStore {
    memory: Arc<MemoryStore>,
    disk: Arc<DiskStore>,
}

impl HybridStore {
    pub fn new(memory: MemoryStore, disk: DiskStore) -> HybridStore {
        HybridStore {
            memory: Arc::new(memory),
            disk: Arc::new(disk),
        }
    }

    /// A store with `memory_bytes` of memory in front of a disk tier of `disk_bytes` in
    /// `dir` (default [`DiskOptions`]). Blocking: scans the directory.
    pub fn open(memory_bytes: u64, dir: &Path, disk_bytes: u64) -> io::Result<HybridStore> {
        let disk = DiskStore::open(dir, DiskOptions::new(disk_bytes))?;
        Ok(HybridStore::new(MemoryStore::new(memory_bytes), disk))
    }

    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    pub fn disk(&self) -> &DiskStore {
        &self.disk
    }

    /// The tags of `key`'s variants (sorted, deduplicated) without reading a file: from
    /// memory, else from the disk index. For purges by tag.
    pub fn tags(&self, key: &str) -> Option<Vec<String>> {
        match self.memory.get(key) {
            Some(entry) => {
                let mut tags: Vec<String> = entry
                    .variants
                    .iter()
                    .flat_map(|v| v.tags.iter().cloned())
                    .collect();
                tags.sort();
                tags.dedup();
                Some(tags)
            }
            None => self.disk.tags(key),
        }
    }

    /// [`Storage::get`] for async callers: a memory hit is answered at once, a disk read
    /// runs on Tokio's blocking pool.
    pub async fn get_async(&self, key: &str) -> Option<Arc<Entry>> {
        if let Some(entry) = self.memory.get(key) {
            self.disk.touch(key);
            return Some(entry);
        }
        let memory = self.memory.clone();
        let disk = self.disk.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || read_through(&memory, &disk, &key))
            .await
            .ok()
            .flatten()
    }
}

/// Reads `key` from disk and promotes it into memory if it is still current.
fn read_through(memory: &MemoryStore, disk: &DiskStore, key: &str) -> Option<Arc<Entry>> {
    disk.get_then(key, |entry| memory.put(key.to_owned(), entry.clone()))
}

impl Storage for HybridStore {
    fn get(&self, key: &str) -> Option<Arc<Entry>> {
        if let Some(entry) = self.memory.get(key) {
            self.disk.touch(key);
            return Some(entry);
        }
        read_through(&self.memory, &self.disk, key)
    }

    fn put(&self, key: String, entry: Arc<Entry>) {
        self.disk.put(key.clone(), entry.clone());
        self.memory.put(key, entry);
    }

    fn remove(&self, key: &str) {
        self.disk.remove(key);
        self.memory.remove(key);
    }

    /// The union of both tiers' keys.
    fn keys(&self) -> Vec<Arc<String>> {
        union(self.disk.keys(), self.memory.keys())
    }

    /// Bytes of both tiers together; entries: the larger tier's count (the disk tier holds
    /// what memory holds once its writes land, so the sum would count most twice).
    fn usage(&self) -> (u64, u64) {
        let (memory_bytes, memory_entries) = self.memory.usage();
        let (disk_bytes, disk_entries) = self.disk.usage();
        (memory_bytes + disk_bytes, memory_entries.max(disk_entries))
    }

    fn host_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        union(self.disk.host_keys(bucket), self.memory.host_keys(bucket))
    }

    fn tag_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        union(self.disk.tag_keys(bucket), self.memory.tag_keys(bucket))
    }

    /// Evictions of both tiers (an entry evicted from memory is usually still on disk).
    fn evictions(&self) -> u64 {
        self.memory.evictions() + self.disk.evictions()
    }
}

fn union(a: Vec<Arc<String>>, b: Vec<Arc<String>>) -> Vec<Arc<String>> {
    let mut keys: HashSet<Arc<String>> = a.into_iter().collect();
    keys.extend(b);
    keys.into_iter().collect()
}
