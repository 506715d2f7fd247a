//! The storage node's scrubber: re-reads every block it holds and checks it against its
//! id, so rot is found before a read needs the block (a corrupt block is quarantined, as
//! a read would; the gateways' repair then writes it back from other copies or shards).
//!
//! A pass walks the blocks in id order, a page at a time, throttled to `bytes_per_sec`
//! so requests keep their latency. Passes start every `interval` after the last one
//! ended, or at once when asked (`POST /v1/scrub`, [`Scrubber::request`]); a request
//! during a pass is answered with that pass. [`ScrubState`] (in `GET /v1/status`) says
//! whether one is running, how far it got, and what the last one found.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::block::{BlockId, BlockStore};

/// Blocks read per step of a pass.
const PAGE: usize = 64;

/// When a node scrubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubSchedule {
    /// Time from the end of one pass to the start of the next (`None`: only on request).
    pub interval: Option<Duration>,
    /// The most bytes a second a pass reads (0: no limit).
    pub bytes_per_sec: u64,
}

impl ScrubSchedule {
    /// Only when asked, as fast as the disk reads.
    pub fn on_request() -> ScrubSchedule {
        ScrubSchedule {
            interval: None,
            bytes_per_sec: 0,
        }
    }
}

impl Default for ScrubSchedule {
    /// Weekly, at most 32 MiB/s.
    fn default() -> Self {
        ScrubSchedule {
            interval: Some(Duration::from_secs(7 * 24 * 3600)),
            bytes_per_sec: 32 << 20,
        }
    }
}

/// Where scrubbing stands on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubState {
    pub running: bool,
    /// Passes finished since the node started.
    pub passes: u64,
    /// When the current (or last) pass started and when the last one finished, in ms
    /// since the Unix epoch.
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Of the current pass, or the last one when none runs: blocks checked, bytes read,
    /// blocks found corrupt (quarantined).
    pub checked: u64,
    pub bytes: u64,
    pub corrupt: u64,
    /// Corrupt blocks found by every pass since the node started.
    pub corrupt_total: u64,
}

/// A node's scrubber: its state, and the bell that starts a pass now.
#[derive(Default)]
pub struct Scrubber {
    state: Mutex<ScrubState>,
    asked: Notify,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Scrubber {
    pub fn state(&self) -> ScrubState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScrubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a pass now; `false` when one is already running (it answers the request).
    pub fn request(&self) -> bool {
        let running = self.lock().running;
        if !running {
            self.asked.notify_one();
        }
        !running
    }

    /// Runs passes as `schedule` says until `stopped`.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<BlockStore>,
        schedule: ScrubSchedule,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            let wait = async {
                match schedule.interval {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait => {}
                () = self.asked.notified() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            tokio::select! {
                () = self.pass(&store, schedule.bytes_per_sec) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass over every block.
    async fn pass(&self, store: &Arc<BlockStore>, bytes_per_sec: u64) {
        {
            let mut s = self.lock();
            s.running = true;
            s.started_ms = Some(now_ms());
            (s.checked, s.bytes, s.corrupt) = (0, 0, 0);
        }
        let started = Instant::now();
        let mut after: Option<BlockId> = None;
        loop {
            let store = store.clone();
            let from = after;
            let page =
                tokio::task::spawn_blocking(move || store.scrub_page(from.as_ref(), PAGE)).await;
            let page = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "scrub: cannot read the blocks; pass ended");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "scrub task failed; pass ended");
                    break;
                }
            };
            let bytes = {
                let mut s = self.lock();
                s.checked += page.checked;
                s.bytes += page.bytes;
                s.corrupt += page.corrupt;
                s.corrupt_total += page.corrupt;
                s.bytes
            };
            let Some(last) = page.last else {
                break;
            };
            after = Some(last);
            if bytes_per_sec > 0 {
                let due = Duration::from_secs_f64(bytes as f64 / bytes_per_sec as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        let mut s = self.lock();
        s.running = false;
        s.passes += 1;
        s.finished_ms = Some(now_ms());
        tracing::info!(
            checked = s.checked,
            bytes = s.bytes,
            corrupt = s.corrupt,
            "scrub pass finished"
        );
    }
}
