//! The eviction policy of the disk tier: [`S3Fifo`] (Yang et al., SOSP 2023), weighted by
//! bytes, and its bookkeeping (queues, access counts, ghost keys). It decides which keys
//! leave; the tier that owns it ([`super::disk`]) deletes their files.
//!
//! New keys enter a small FIFO (10% of the capacity); those read again while there move
//! to the main FIFO, the others leave and are remembered in a ghost queue (keys only), and
//! a key seen again while in the ghost queue goes straight to main. Main is a FIFO with
//! reinsertion (CLOCK-like, up to 3 second chances). One-hit wonders and scans leave
//! quickly without flushing the hot set; `benches/eviction.rs` measures it against LRU
//! (figures in `bench/README.md`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Highest access count kept per entry (main-queue reinsertions before eviction).
const MAX_FREQ: u8 = 3;

/// S3-FIFO eviction over weighted keys (see the module documentation). Queues hold
/// `(key, seq)` pairs; an entry removed or moved leaves a stale pair behind, skipped when
/// popped and compacted away when they pile up.
pub struct S3Fifo<K> {
    capacity: u64,
    small_capacity: u64,
    entries: HashMap<K, Meta>,
    small: VecDeque<(K, u64)>,
    main: VecDeque<(K, u64)>,
    small_weight: u64,
    main_weight: u64,
    ghost: VecDeque<(K, u64)>,
    ghost_index: HashMap<K, u64>,
    seq: u64,
}

struct Meta {
    weight: u64,
    freq: u8,
    main: bool,
    seq: u64,
}

impl<K: Hash + Eq + Clone> S3Fifo<K> {
    /// A policy holding at most `capacity` of weight; the small queue gets 10% of it.
    pub fn new(capacity: u64) -> S3Fifo<K> {
        S3Fifo {
            capacity,
            small_capacity: capacity / 10,
            entries: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_weight: 0,
            main_weight: 0,
            ghost: VecDeque::new(),
            ghost_index: HashMap::new(),
            seq: 0,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total weight held.
    pub fn weight(&self) -> u64 {
        self.small_weight + self.main_weight
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Records a hit; false when `key` is not held.
    pub fn access(&mut self, key: &K) -> bool {
        match self.entries.get_mut(key) {
            Some(m) => {
                m.freq = (m.freq + 1).min(MAX_FREQ);
                true
            }
            None => false,
        }
    }

    /// Adds `key` (or updates its weight, counting a hit), then evicts until the weight
    /// fits, appending the evicted keys to `evicted` (`key` itself may be among them).
    pub fn insert(&mut self, key: K, weight: u64, evicted: &mut Vec<K>) {
        let to_main = self.ghost_index.remove(&key).is_some();
        self.add(key, weight, to_main, evicted);
    }

    /// Adds `key` straight to the main queue (entries known to be worth keeping, such as
    /// those found on disk at startup).
    pub fn insert_main(&mut self, key: K, weight: u64, evicted: &mut Vec<K>) {
        self.ghost_index.remove(&key);
        self.add(key, weight, true, evicted);
    }

    /// Forgets `key` (not remembered as a ghost); false when it was not held.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.entries.remove(key) {
            Some(m) => {
                self.unweigh(&m);
                true
            }
            None => false,
        }
    }

    fn add(&mut self, key: K, weight: u64, to_main: bool, evicted: &mut Vec<K>) {
        if weight > self.capacity {
            // Would flush everything and still not fit.
            self.remove(&key);
            evicted.push(key);
            return;
        }
        if let Some(m) = self.entries.get_mut(&key) {
            if m.main {
                self.main_weight = self.main_weight - m.weight + weight;
            } else {
                self.small_weight = self.small_weight - m.weight + weight;
            }
            m.weight = weight;
            m.freq = (m.freq + 1).min(MAX_FREQ);
        } else {
            self.seq += 1;
            let seq = self.seq;
            self.entries.insert(
                key.clone(),
                Meta {
                    weight,
                    freq: 0,
                    main: to_main,
                    seq,
                },
            );
            if to_main {
                self.main.push_back((key, seq));
                self.main_weight += weight;
            } else {
                self.small.push_back((key, seq));
                self.small_weight += weight;
            }
        }
        self.evict(evicted);
        self.compact();
    }

    fn unweigh(&mut self, m: &Meta) {
        if m.main {
            self.main_weight -= m.weight;
        } else {
            self.small_weight -= m.weight;
        }
    }

    fn evict(&mut self, evicted: &mut Vec<K>) {
        while self.weight() > self.capacity {
            let from_small = self.small_weight > 0
                && (self.small_weight >= self.small_capacity || self.main_weight == 0);
            let done = if from_small {
                self.evict_small(evicted)
            } else {
                self.evict_main(evicted)
            };
            if !done && !self.evict_small(evicted) && !self.evict_main(evicted) {
                break;
            }
        }
    }

    /// Takes the oldest entry of the small queue: to main if it was read while there,
    /// otherwise out (into the ghost queue). False when the queue is empty.
    fn evict_small(&mut self, evicted: &mut Vec<K>) -> bool {
        while let Some((key, seq)) = self.small.pop_front() {
            let Some(m) = self.entries.get_mut(&key) else {
                continue;
            };
            if m.seq != seq || m.main {
                continue;
            }
            if m.freq > 0 {
                m.main = true;
                m.freq = 0;
                self.small_weight -= m.weight;
                self.main_weight += m.weight;
                self.main.push_back((key, seq));
                return true;
            }
            if let Some(m) = self.entries.remove(&key) {
                self.small_weight -= m.weight;
            }
            self.remember(key.clone());
            evicted.push(key);
            return true;
        }
        false
    }

    /// Takes the oldest entry of the main queue: back to the tail (one chance less) if it
    /// was read since, otherwise out. False when the queue is empty.
    fn evict_main(&mut self, evicted: &mut Vec<K>) -> bool {
        while let Some((key, seq)) = self.main.pop_front() {
            let Some(m) = self.entries.get_mut(&key) else {
                continue;
            };
            if m.seq != seq || !m.main {
                continue;
            }
            if m.freq > 0 {
                m.freq -= 1;
                self.main.push_back((key, seq));
                continue;
            }
            if let Some(m) = self.entries.remove(&key) {
                self.main_weight -= m.weight;
            }
            evicted.push(key);
            return true;
        }
        false
    }

    /// Remembers an evicted key in the ghost queue, which holds as many keys as there are
    /// entries.
    fn remember(&mut self, key: K) {
        self.seq += 1;
        self.ghost.push_back((key.clone(), self.seq));
        self.ghost_index.insert(key, self.seq);
        let limit = self.entries.len().max(1);
        while self.ghost_index.len() > limit {
            let Some((k, s)) = self.ghost.pop_front() else {
                break;
            };
            if self.ghost_index.get(&k) == Some(&s) {
                self.ghost_index.remove(&k);
            }
        }
    }

    /// Drops stale queue pairs once they outnumber the live ones.
    fn compact(&mut self) {
        let live = self.entries.len();
        if self.small.len() + self.main.len() > 2 * live + 1024 {
            // A live entry has exactly one pair with its seq, in the queue it is in.
            let entries = &self.entries;
            let valid = |(k, s): &(K, u64), main: bool| {
                entries
                    .get(k)
                    .is_some_and(|m| m.seq == *s && m.main == main)
            };
            self.small.retain(|p| valid(p, false));
            self.main.retain(|p| valid(p, true));
        }
        if self.ghost.len() > 2 * self.ghost_index.len() + 1024 {
            let index = &self.ghost_index;
            self.ghost.retain(|(k, s)| index.get(k) == Some(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fifo_keeps_the_weight_under_capacity() {
        let mut p = S3Fifo::new(100);
        let mut out = Vec::new();
        for k in 0..1000u64 {
            p.insert(k, 1 + k % 7, &mut out);
            assert!(p.weight() <= 100);
        }
        let evicted: u64 = out.iter().map(|k| 1 + k % 7).sum();
        let total: u64 = (0..1000u64).map(|k| 1 + k % 7).sum();
        assert_eq!(total - evicted, p.weight());
    }

    #[test]
    fn s3fifo_one_hit_wonders_do_not_flush_the_hot_set() {
        let mut p = S3Fifo::new(100);
        let mut out = Vec::new();
        for round in 0..50u64 {
            for _ in 0..3 {
                for hot in 0..20u64 {
                    if !p.access(&hot) {
                        p.insert(hot, 1, &mut out);
                    }
                }
            }
            // A scan of twice the capacity, each key seen once: it would flush an LRU.
            for cold in 0..200u64 {
                p.insert(1_000_000 + round * 1000 + cold, 1, &mut out);
            }
        }
        let hot_held = (0..20u64).filter(|k| p.contains(k)).count();
        assert_eq!(hot_held, 20, "the hot set survived the scans");
    }

    #[test]
    fn s3fifo_ghost_hits_go_to_main_and_remove_forgets() {
        let mut p = S3Fifo::new(10);
        let mut out = Vec::new();
        for k in 0..20u64 {
            p.insert(k, 1, &mut out);
        }
        assert!(out.contains(&0));
        // 0 is a ghost now: readmitted to main, it outlives the small queue's churn.
        p.insert(0, 1, &mut out);
        for k in 100..105u64 {
            p.insert(k, 1, &mut out);
        }
        assert!(p.contains(&0));
        assert!(p.remove(&0));
        assert!(!p.contains(&0));
        assert!(!p.remove(&0));
        let w = p.weight();
        p.insert(7, 1, &mut out);
        assert!(p.weight() <= w + 1);
    }

    #[test]
    fn s3fifo_compacts_stale_pairs() {
        let mut p = S3Fifo::new(1_000_000);
        let mut out = Vec::new();
        for round in 0..20u64 {
            for k in 0..1000u64 {
                p.insert(k, 1, &mut out);
                p.remove(&k);
            }
            assert!(
                p.small.len() + p.main.len() <= 2 * p.len() + 1024 + 1,
                "{round}"
            );
        }
        assert!(p.is_empty());
        assert_eq!(p.weight(), 0);
    }

    #[test]
    fn an_oversized_entry_evicts_itself() {
        let mut p = S3Fifo::new(10);
        let mut out = Vec::new();
        p.insert(1u64, 4, &mut out);
        p.insert(2u64, 50, &mut out);
        assert!(out.contains(&2));
        assert!(p.contains(&1));
        assert!(p.weight() <= 10);
    }
}
