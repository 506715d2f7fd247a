//! Request counters of the demo origin: total and per path, read by tests through
//! `OriginHandle` ("the origin saw exactly one request").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Distinct paths counted one by one; later new paths only count in the total, so a
/// client cannot grow the map without bound.
const MAX_PATHS: usize = 4096;

#[derive(Default)]
pub(crate) struct Stats {
    total: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
}

impl Stats {
    pub(crate) fn record(&self, path: &str) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let mut map = self.per_path.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(path) {
            *n += 1;
        } else if map.len() < MAX_PATHS {
            map.insert(path.to_owned(), 1);
        }
    }

    pub(crate) fn requests(&self, path: &str) -> u64 {
        let map = self.per_path.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(path).copied().unwrap_or(0)
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
}
