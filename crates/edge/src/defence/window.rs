//! One second of counted traffic, in memory fixed at start: exact per-address counts in a
//! table of bounded size; when it is full an address is counted under its /24 (/48) in a
//! second bounded table (the request is still counted, and the degradation is counted
//! too); when that is full as well, under its prefix in a HeavyKeeper sketch, which keeps
//! the heaviest prefixes in fixed memory. Paths and user agents go to HeavyKeeper top-k
//! sketches, one request in [`SAMPLE`] counted [`SAMPLE`] times (heavy hitters show
//! just the same, at an eighth of the cost). Each serving thread writes its own shard; the detector takes every shard's
//! window once a second and merges them (`Tally`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use heavykeeper::TopK;
use ipnet::IpNet;

/// How much a node tracks per second, over all services (`lingjing edge --defence-*`).
#[derive(Debug, Clone, Copy)]
pub struct TableSizes {
    /// Client addresses counted exactly.
    pub sources: usize,
    /// /24 (/48) prefixes counted exactly (addresses past the first table).
    pub prefixes: usize,
    /// Heaviest paths, user agents and overflow prefixes kept by each sketch.
    pub top_k: usize,
}

impl Default for TableSizes {
    fn default() -> Self {
        TableSizes {
            sources: 65_536,
            prefixes: 16_384,
            top_k: 32,
        }
    }
}

/// Service slot and key: every table is shared by all services.
pub type Keyed<K> = (u32, K);

/// Paths and user agents are counted for one request in this many.
pub const SAMPLE: u32 = 8;

/// The tables' hasher: fast, keyed at random per process (no chosen-collision floods).
type Hasher = ahash::RandomState;

/// A HeavyKeeper sketch keeping the `k` heaviest keys (width `8k`, depth 4).
fn sketch<T: Ord + Clone + std::hash::Hash + std::fmt::Debug>(k: usize) -> TopK<T> {
    TopK::new(k, (k * 8).max(64), 4, 0.9)
}

/// One shard's counts for the current second.
pub struct Window {
    pub sources: HashMap<Keyed<IpAddr>, u32, Hasher>,
    pub prefixes: HashMap<Keyed<IpNet>, u32, Hasher>,
    /// Requests seen, for sampling paths and user agents.
    seen: u32,
    /// Prefixes that did not fit in `prefixes`.
    pub overflow: TopK<Keyed<IpNet>>,
    pub paths: TopK<Keyed<Box<str>>>,
    pub agents: TopK<Keyed<Box<str>>>,
    /// Requests counted under their prefix because the address table was full.
    pub degraded_sources: u64,
    /// Requests counted in the overflow sketch because the prefix table was full too.
    pub degraded_prefixes: u64,
    source_cap: usize,
    prefix_cap: usize,
}

impl Window {
    /// A window holding at most `sources` addresses and `prefixes` prefixes.
    pub fn new(sources: usize, prefixes: usize, top_k: usize) -> Window {
        Window {
            sources: HashMap::with_capacity_and_hasher(sources, Hasher::new()),
            prefixes: HashMap::with_capacity_and_hasher(prefixes, Hasher::new()),
            seen: 0,
            overflow: sketch(top_k),
            paths: sketch(top_k),
            agents: sketch(top_k),
            degraded_sources: 0,
            degraded_prefixes: 0,
            source_cap: sources.max(1),
            prefix_cap: prefixes.max(1),
        }
    }

    /// Counts one request of service `slot` from `addr` for `path` by `agent`; the
    /// address's count in this window so far (0 when it is counted under its prefix).
    pub fn count(&mut self, slot: u32, addr: IpAddr, path: &str, agent: Option<&str>) -> u32 {
        let n = self.count_source(slot, addr);
        self.seen = self.seen.wrapping_add(1);
        if self.seen.is_multiple_of(SAMPLE) {
            self.paths.add(&(slot, Box::from(path)), u64::from(SAMPLE));
            if let Some(agent) = agent {
                self.agents
                    .add(&(slot, Box::from(agent)), u64::from(SAMPLE));
            }
        }
        n
    }

    fn count_source(&mut self, slot: u32, addr: IpAddr) -> u32 {
        let len = self.sources.len();
        if let Some(n) = self.sources.get_mut(&(slot, addr)) {
            *n = n.saturating_add(1);
            return *n;
        }
        if len < self.source_cap {
            self.sources.insert((slot, addr), 1);
            return 1;
        }
        // Full: aggregate the address into its prefix.
        self.degraded_sources += 1;
        let prefix = lingjing_model::defence::aggregate(addr);
        let len = self.prefixes.len();
        if let Some(n) = self.prefixes.get_mut(&(slot, prefix)) {
            *n = n.saturating_add(1);
        } else if len < self.prefix_cap {
            self.prefixes.insert((slot, prefix), 1);
        } else {
            self.degraded_prefixes += 1;
            self.overflow.add(&(slot, prefix), 1);
        }
        0
    }

    /// How full the address and prefix tables are (0 to 1).
    pub fn fill(&self) -> (f64, f64) {
        (
            self.sources.len() as f64 / self.source_cap as f64,
            self.prefixes.len() as f64 / self.prefix_cap as f64,
        )
    }
}

/// A shard per serving thread (threads take one in turn), so counting rarely contends.
pub struct Shards {
    pub shards: Vec<std::sync::Mutex<Window>>,
    sizes: TableSizes,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl Shards {
    pub fn new(sizes: TableSizes) -> Shards {
        let n = crate::cores::available().clamp(1, 8);
        Shards {
            shards: (0..n)
                .map(|_| std::sync::Mutex::new(Self::window(sizes, n)))
                .collect(),
            sizes,
        }
    }

    fn window(sizes: TableSizes, n: usize) -> Window {
        Window::new(
            sizes.sources.div_ceil(n),
            sizes.prefixes.div_ceil(n),
            sizes.top_k,
        )
    }

    /// The calling thread's shard.
    pub fn mine(&self) -> &std::sync::Mutex<Window> {
        let i = THREAD.with(|t| *t) % self.shards.len();
        &self.shards[i]
    }

    /// Takes every shard's window, leaving empty ones.
    pub fn take(&self) -> Vec<Window> {
        let n = self.shards.len();
        self.shards
            .iter()
            .map(|s| {
                let fresh = Self::window(self.sizes, n);
                std::mem::replace(&mut *lock(s), fresh)
            })
            .collect()
    }
}

/// Locks a shard; a thread that panicked while counting leaves counts, not broken state.
pub fn lock(m: &std::sync::Mutex<Window>) -> std::sync::MutexGuard<'_, Window> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One service's second, merged over the shards.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Requests per address (exactly counted ones).
    pub sources: HashMap<IpAddr, u64>,
    /// Requests per /24 (/48): every exactly counted address's, plus those counted only
    /// under their prefix.
    pub prefixes: HashMap<IpNet, u64>,
    pub paths: Vec<(Box<str>, u64)>,
    pub agents: Vec<(Box<str>, u64)>,
}

/// What a second of windows adds up to: per service slot, and the tables' state.
#[derive(Debug, Default)]
pub struct Merged {
    pub services: HashMap<u32, Tally>,
    pub degraded_sources: u64,
    pub degraded_prefixes: u64,
    pub source_fill: f64,
    pub prefix_fill: f64,
}

/// Merges the shards' windows.
pub fn merge(windows: Vec<Window>) -> Merged {
    let mut out = Merged::default();
    for w in windows {
        let (sf, pf) = w.fill();
        out.source_fill = out.source_fill.max(sf);
        out.prefix_fill = out.prefix_fill.max(pf);
        out.degraded_sources += w.degraded_sources;
        out.degraded_prefixes += w.degraded_prefixes;
        for ((slot, addr), n) in w.sources {
            let t = out.services.entry(slot).or_default();
            *t.sources.entry(addr).or_default() += u64::from(n);
            *t.prefixes
                .entry(lingjing_model::defence::aggregate(addr))
                .or_default() += u64::from(n);
        }
        for ((slot, prefix), n) in w.prefixes {
            *out.services
                .entry(slot)
                .or_default()
                .prefixes
                .entry(prefix)
                .or_default() += u64::from(n);
        }
        for node in w.overflow.list() {
            let (slot, prefix) = node.item;
            *out.services
                .entry(slot)
                .or_default()
                .prefixes
                .entry(prefix)
                .or_default() += node.count;
        }
        for node in w.paths.list() {
            let (slot, path) = node.item;
            add_top(
                &mut out.services.entry(slot).or_default().paths,
                path,
                node.count,
            );
        }
        for node in w.agents.list() {
            let (slot, agent) = node.item;
            add_top(
                &mut out.services.entry(slot).or_default().agents,
                agent,
                node.count,
            );
        }
    }
    out
}

fn add_top(list: &mut Vec<(Box<str>, u64)>, key: Box<str>, n: u64) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 += n,
        None => list.push((key, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_address_table_counts_under_prefixes_and_never_stops() {
        let mut w = Window::new(4, 2, 8);
        for i in 0..10u8 {
            for _ in 0..3 {
                w.count(0, IpAddr::from([10, 0, i, 1]), "/", None);
            }
        }
        assert_eq!(w.sources.len(), 4);
        // 6 addresses did not fit: 2 prefixes in the table, 4 in the sketch.
        assert_eq!(w.degraded_sources, 18);
        assert_eq!(w.degraded_prefixes, 12);
        let m = merge(vec![w]);
        let t = &m.services[&0];
        let total: u64 = t.prefixes.values().sum();
        assert_eq!(total, 30, "every request is counted under some prefix");
        assert_eq!(t.sources.values().sum::<u64>(), 12);
    }
}
