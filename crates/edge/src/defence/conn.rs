//! Connection-level defence at the accept loop, before any TLS: at most so many
//! connections open at once and so many new ones per second from one client address, and
//! none from an address an enforced rule refuses for every service. The table is bounded:
//! when it is full an address is counted under its /24 (/48), whose caps are then those of
//! [`PREFIX_FACTOR`] addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

/// A prefix counted in place of its addresses gets this many addresses' caps.
pub const PREFIX_FACTOR: u32 = 16;

/// Caps per client address (0: no cap).
#[derive(Debug, Clone, Copy)]
pub struct ConnCaps {
    pub max_open: u32,
    pub max_new_per_second: u32,
    /// Addresses (and prefixes) tracked at once.
    pub table: usize,
}

impl Default for ConnCaps {
    fn default() -> Self {
        ConnCaps {
            max_open: 1024,
            max_new_per_second: 1000,
            table: 65_536,
        }
    }
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Blocked,
    TooManyOpen,
    TooManyNew,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Blocked => "blocked",
            Refusal::TooManyOpen => "connections_open",
            Refusal::TooManyNew => "connections_new",
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    open: u32,
    new: u32,
    second: u64,
}

#[derive(Default)]
struct Table {
    entries: HashMap<IpNet, Entry>,
    /// Connections counted under a prefix since the last sweep.
    degraded: u64,
    /// Connections let in uncounted (full even for prefixes) since the last sweep.
    uncounted: u64,
}

/// The per-source connection counters.
pub struct SourceGate {
    caps: ConnCaps,
    table: Mutex<Table>,
}

/// One admitted connection's share of its source's count; released when dropped.
pub struct SourceSlot {
    gate: Arc<SourceGate>,
    /// The entry it counts in (none: admitted uncounted, the table being full).
    key: Option<IpNet>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut t = self
            .gate
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = t.entries.get_mut(&key) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

impl SourceGate {
    pub fn new(caps: ConnCaps) -> Arc<SourceGate> {
        Arc::new(SourceGate {
            caps,
            table: Mutex::new(Table {
                entries: HashMap::with_capacity(caps.table.max(1)),
                degraded: 0,
                uncounted: 0,
            }),
        })
    }

    /// Counts a new connection from `addr` at `second` (a clock in seconds), or says why
    /// it is refused.
    pub fn admit(self: &Arc<Self>, addr: IpAddr, second: u64) -> Result<SourceSlot, Refusal> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let host = IpNet::from(addr);
        let (key, factor) = if t.entries.contains_key(&host) || t.entries.len() < self.caps.table {
            (host, 1)
        } else {
            t.degraded += 1;
            (lingjing_model::defence::aggregate(addr), PREFIX_FACTOR)
        };
        let cap = self.caps.table;
        if !t.entries.contains_key(&key) && t.entries.len() > cap + cap / 8 {
            // Even the prefixes do not fit: let it in uncounted rather than refuse all
            // (`sweep` says so).
            t.uncounted += 1;
            return Ok(SourceSlot {
                gate: self.clone(),
                key: None,
            });
        }
        let e = t.entries.entry(key).or_default();
        if e.second != second {
            e.second = second;
            e.new = 0;
        }
        let caps = self.caps;
        if caps.max_new_per_second > 0 && e.new >= caps.max_new_per_second.saturating_mul(factor) {
            return Err(Refusal::TooManyNew);
        }
        if caps.max_open > 0 && e.open >= caps.max_open.saturating_mul(factor) {
            return Err(Refusal::TooManyOpen);
        }
        e.new += 1;
        e.open += 1;
        Ok(SourceSlot {
            gate: self.clone(),
            key: Some(key),
        })
    }

    /// Forgets sources with nothing open (once a second), and returns the table's fill
    /// (0 to 1) and the connections counted under a prefix since the last call.
    pub fn sweep(&self) -> (f64, u64) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.entries.retain(|_, e| e.open > 0);
        let fill = t.entries.len() as f64 / self.caps.table.max(1) as f64;
        let uncounted = std::mem::take(&mut t.uncounted);
        if uncounted > 0 {
            tracing::warn!(
                connections = uncounted,
                "defence: the connection table is full even for prefixes; these were let in without per-source caps"
            );
        }
        (fill.min(1.0), std::mem::take(&mut t.degraded))
    }

    /// How full the table is (0 to 1).
    pub fn fill(&self) -> f64 {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        (t.entries.len() as f64 / self.caps.table.max(1) as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_open_and_new_connections_per_source() {
        let gate = SourceGate::new(ConnCaps {
            max_open: 3,
            max_new_per_second: 5,
            table: 100,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| gate.admit(a, 1).unwrap()).collect();
        assert_eq!(gate.admit(a, 1).err(), Some(Refusal::TooManyOpen));
        drop(slots);
        gate.admit(a, 1).unwrap();
        gate.admit(a, 1).unwrap();
        // 5 new in second 1.
        assert_eq!(gate.admit(a, 1).err(), Some(Refusal::TooManyNew));
        assert!(gate.admit(a, 2).is_ok());
        // Another address is not affected.
        assert!(gate.admit("10.0.0.2".parse().unwrap(), 1).is_ok());
    }

    #[test]
    fn a_full_table_counts_prefixes() {
        let gate = SourceGate::new(ConnCaps {
            max_open: 1,
            max_new_per_second: 0,
            table: 2,
        });
        let _a = gate.admit("10.0.0.1".parse().unwrap(), 1).unwrap();
        let _b = gate.admit("10.0.1.1".parse().unwrap(), 1).unwrap();
        // Full: 10.0.2.x share one prefix entry with PREFIX_FACTOR times the cap.
        let held: Vec<_> = (0..PREFIX_FACTOR)
            .map(|i| {
                gate.admit(IpAddr::from([10, 0, 2, i as u8 + 1]), 1)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            gate.admit("10.0.2.200".parse().unwrap(), 1).err(),
            Some(Refusal::TooManyOpen)
        );
        let (_, degraded) = gate.sweep();
        assert_eq!(degraded, u64::from(PREFIX_FACTOR) + 1);
        drop(held);
    }
}
