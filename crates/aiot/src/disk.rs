//! What an edge AI node keeps on disk: verified artefacts by digest (`artifacts/`), and
//! one state file per slot (`slots/{slot}.json`: its committed version, the one before,
//! and the attempt under way). Every write is temp file -> fsync -> rename (-> fsync of
//! the directory), so a `kill -9` at any moment leaves each file whole, old or new; an
//! artefact is renamed into place only after its digest and size matched, and is checked
//! again each time it is read.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use lingjing_model::aiot::{ModelVersion, Probation, SlotStage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A version a slot has committed (or had, before its last commit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    pub version: ModelVersion,
    /// The revision that brought it.
    pub revision: u64,
}

/// The revision a slot is acting on, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub revision: u64,
    pub version: ModelVersion,
    pub stage: SlotStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub probation: Probation,
}

/// One slot's state, as kept in `slots/{slot}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotState {
    pub slot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Installed>,
    /// The committed version before `committed` (kept on disk to go back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Installed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// The revision that emptied the slot (version 0), if that is the newest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleared: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SlotState {
    pub fn new(slot: &str) -> SlotState {
        SlotState {
            slot: slot.to_owned(),
            committed: None,
            previous: None,
            attempt: None,
            cleared: 0,
        }
    }

    /// The newest revision acted on (0: none).
    pub fn revision(&self) -> u64 {
        let attempt = self.attempt.as_ref().map_or(0, |a| a.revision);
        let committed = self.committed.as_ref().map_or(0, |c| c.revision);
        attempt.max(committed).max(self.cleared)
    }

    /// Digests this slot may still need (its versions' models and self-test inputs).
    pub fn digests(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let versions = [
            self.committed.as_ref().map(|c| &c.version),
            self.previous.as_ref().map(|c| &c.version),
            self.attempt.as_ref().map(|a| &a.version),
        ];
        for v in versions.into_iter().flatten() {
            out.insert(v.artifact.clone());
            if let Some(t) = &v.self_test {
                out.insert(t.input.clone());
            }
        }
        out
    }
}

/// The node's directory of artefacts and slot states.
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

fn io_context(e: io::Error, what: &str, path: &Path) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

impl Disk {
    /// Opens (creating) `root` with its `artifacts/` and `slots/` directories (0700),
    /// removing downloads a crash cut short.
    pub fn open(root: &Path) -> Result<Disk, String> {
        for dir in [root.to_owned(), root.join("artifacts"), root.join("slots")] {
            lingjing_client::fs::ensure_private_dir(&dir)
                .map_err(|e| io_context(e, "create", &dir))?;
        }
        let disk = Disk {
            root: root.to_owned(),
        };
        for entry in std::fs::read_dir(disk.artifacts_dir())
            .map_err(|e| io_context(e, "read", &disk.artifacts_dir()))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(disk)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn artifacts_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// Where the verified artefact `digest` lives.
    pub fn artifact_path(&self, digest: &str) -> PathBuf {
        self.artifacts_dir().join(digest)
    }

    /// A file of its own for one download of `digest`, until it is verified (two slots
    /// may fetch the same artefact at once).
    pub fn partial_path(&self, digest: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.artifacts_dir()
            .join(format!("{digest}.{}-{n}.part", std::process::id()))
    }

    pub fn has_artifact(&self, digest: &str) -> bool {
        self.artifact_path(digest).is_file()
    }

    /// Puts a finished, verified download (`part`) in place as `digest` (fsync, rename,
    /// fsync of the directory). Blocking: call it off the async runtime.
    pub fn commit_artifact(&self, digest: &str, part: &Path) -> Result<(), String> {
        let file = std::fs::File::open(part).map_err(|e| io_context(e, "open", part))?;
        file.sync_all().map_err(|e| io_context(e, "sync", part))?;
        let path = self.artifact_path(digest);
        std::fs::rename(part, &path).map_err(|e| io_context(e, "rename", part))?;
        sync_dir(&self.artifacts_dir());
        Ok(())
    }

    /// Reads the artefact `digest`, checking that its content still has that digest (a
    /// disk may rot; a file may be edited by hand). At most `limit` bytes.
    pub fn read_artifact(&self, digest: &str, limit: u64) -> Result<Vec<u8>, String> {
        let path = self.artifact_path(digest);
        let file = std::fs::File::open(&path).map_err(|e| io_context(e, "open", &path))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_context(e, "read", &path))?;
        if bytes.len() as u64 > limit {
            return Err(format!("{} is larger than {limit} bytes", path.display()));
        }
        let got = hex::encode(Sha256::digest(&bytes));
        if got != digest {
            // Useless now: a later attempt fetches it again.
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "the kept artefact {digest} no longer matches its digest (it has {got}); removed"
            ));
        }
        Ok(bytes)
    }

    /// Removes artefacts no slot needs any more.
    pub fn collect_garbage(&self, keep: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.artifacts_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".part") && !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn slot_path(&self, slot: &str) -> PathBuf {
        self.root.join("slots").join(format!("{slot}.json"))
    }

    /// Writes a slot's state so that a crash leaves the old or the new one, whole.
    pub fn save_slot(&self, state: &SlotState) -> Result<(), String> {
        let path = self.slot_path(&state.slot);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        lingjing_client::fs::write_private(&path, &bytes).map_err(|e| io_context(e, "write", &path))
    }

    /// Every slot's kept state (unreadable files are skipped with a warning).
    pub fn load_slots(&self) -> Vec<SlotState> {
        let dir = self.root.join("slots");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<SlotState>(&b).map_err(|e| e.to_string()))
            {
                Ok(state) if path.file_stem().and_then(|s| s.to_str()) == Some(&state.slot) => {
                    out.push(state)
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "slot file names another slot; ignored")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable slot file; ignored")
                }
            }
        }
        out.sort_by(|a, b| a.slot.cmp(&b.slot));
        out
    }
}

/// Makes a rename in `dir` durable (best effort: not every file system can sync one).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_is_read_only_while_it_matches_its_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = Disk::open(dir.path()).expect("open");
        let bytes = b"model bytes";
        let digest = hex::encode(Sha256::digest(bytes));
        let part = disk.partial_path(&digest);
        std::fs::write(&part, bytes).expect("write");
        disk.commit_artifact(&digest, &part).expect("commit");
        assert_eq!(disk.read_artifact(&digest, 100).expect("read"), bytes);
        assert!(disk.read_artifact(&digest, 5).is_err(), "over the limit");
        std::fs::write(disk.artifact_path(&digest), b"rotted").expect("write");
        let err = disk.read_artifact(&digest, 100).expect_err("refused");
        assert!(err.contains("no longer matches"), "{err}");
        assert!(!disk.has_artifact(&digest), "removed");
    }

    #[test]
    fn partial_downloads_are_swept_on_open_and_slots_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = Disk::open(dir.path()).expect("open");
        let part = disk.partial_path("abc");
        std::fs::write(&part, b"half").expect("write");
        let disk = Disk::open(dir.path()).expect("reopen");
        assert!(!part.exists());
        let state = SlotState::new("road");
        disk.save_slot(&state).expect("save");
        std::fs::write(dir.path().join("slots/other.json"), b"{not json").expect("write");
        assert_eq!(disk.load_slots(), vec![state]);
    }
}
