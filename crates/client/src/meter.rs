//! Metering on the node side: the traffic an agent takes from its data plane at each
//! heartbeat, kept per service and wall-clock 5-minute interval as totals of this run
//! (`epoch`), and reported until the control plane has acknowledged an interval's final
//! totals. Counts taken at time `t` belong to the interval holding `t` (heartbeats are a
//! few seconds apart, so at most that much traffic lands in the next interval).
//!
//! Totals, not increments, go on the wire: the control plane keeps the largest total per
//! (node, epoch, service, interval), so a report resent after a lost answer, repeated or
//! arriving late is counted exactly once; and an interval is forgotten here only once a
//! report taken after its end (so holding its final totals) was acknowledged.

use std::collections::BTreeMap;
use std::net::IpAddr;

use lingjing_model::snapshot::{
    MAX_METER_SAMPLES, METER_INTERVAL_MS, MeterReport, MeterSample, UsageSample,
};

/// Most (service, interval) totals kept while the control plane is unreachable: 100
/// services for about 3.5 days. Past it the oldest are dropped, with an error logged.
pub const MAX_KEPT: usize = 100_000;

/// The totals of this run, per (interval start, service).
#[derive(Debug)]
pub struct Meter {
    epoch: u64,
    totals: BTreeMap<Key, UsageSample>,
    dropped: u64,
}

/// A total's key: interval start, service, the node's address the clients reached.
type Key = (u64, String, Option<IpAddr>);

/// What one report carried: the keys sent, and when its counts were taken.
#[derive(Debug, Clone)]
pub struct Sent {
    keys: Vec<Key>,
    taken_ms: u64,
}

impl Meter {
    /// A meter for a run named `epoch` (below 2^63).
    pub fn new(epoch: u64) -> Meter {
        Meter {
            epoch: epoch & (u64::MAX >> 1),
            totals: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// A meter with a random epoch.
    pub fn random() -> Meter {
        Meter::new(rand::random())
    }

    /// Adds `taken` (counted up to `now_ms`) to the totals of `now_ms`'s interval.
    pub fn add(&mut self, now_ms: u64, taken: &[UsageSample]) {
        let start = now_ms - now_ms % METER_INTERVAL_MS;
        for sample in taken.iter().filter(|s| !s.is_empty()) {
            self.totals
                .entry((start, sample.service.clone(), sample.address))
                .or_insert_with(|| UsageSample {
                    service: sample.service.clone(),
                    address: sample.address,
                    ..UsageSample::default()
                })
                .add(sample);
        }
        while self.totals.len() > MAX_KEPT {
            self.totals.pop_first();
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_power_of_two() {
                tracing::error!(
                    dropped = self.dropped,
                    "metering totals dropped: the control plane has not acknowledged a report for days"
                );
            }
        }
    }

    /// The report to send (oldest intervals first, at most [`MAX_METER_SAMPLES`]) and
    /// what it holds, for [`Meter::acknowledged`]; `None` when nothing is waiting.
    pub fn report(&self, now_ms: u64) -> Option<(MeterReport, Sent)> {
        if self.totals.is_empty() {
            return None;
        }
        let mut keys = Vec::new();
        let samples = self
            .totals
            .iter()
            .take(MAX_METER_SAMPLES)
            .map(|(key, usage)| {
                keys.push(key.clone());
                MeterSample {
                    start_ms: key.0,
                    usage: usage.clone(),
                }
            })
            .collect();
        Some((
            MeterReport {
                epoch: self.epoch,
                samples,
            },
            Sent {
                keys,
                taken_ms: now_ms,
            },
        ))
    }

    /// The control plane took the report `sent`: forget the intervals in it that had
    /// ended when its counts were taken (their totals are final and stored).
    pub fn acknowledged(&mut self, sent: &Sent) {
        for key in &sent.keys {
            if key.0 + METER_INTERVAL_MS <= sent.taken_ms {
                self.totals.remove(key);
            }
        }
    }

    /// (service, interval) totals waiting to be acknowledged.
    pub fn waiting(&self) -> usize {
        self.totals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(service: &str, requests: u64, bytes_out: u64) -> UsageSample {
        UsageSample {
            service: service.into(),
            requests,
            bytes_out,
            ..UsageSample::default()
        }
    }

    const T0: u64 = 1_764_547_200_000; // 2025-12-01T00:00Z, an interval start

    #[test]
    fn totals_grow_per_interval_and_are_forgotten_once_final_and_acknowledged() {
        let mut m = Meter::new(7);
        m.add(T0 + 1_000, &[taken("a", 1, 100), taken("b", 0, 0)]);
        m.add(T0 + 2_000, &[taken("a", 2, 50)]);
        let (report, sent) = m.report(T0 + 2_000).expect("waiting");
        assert_eq!(report.epoch, 7);
        assert_eq!(report.samples.len(), 1, "an empty take adds nothing");
        assert_eq!(report.samples[0].start_ms, T0);
        assert_eq!(report.samples[0].usage.requests, 3);
        assert_eq!(report.samples[0].usage.bytes_out, 150);
        // Acknowledged while its interval runs: kept (its totals may still grow), and
        // the next report carries the grown total, not the increment.
        m.acknowledged(&sent);
        m.add(T0 + 3_000, &[taken("a", 1, 10)]);
        let (report, _) = m.report(T0 + 3_000).expect("waiting");
        assert_eq!(report.samples[0].usage.requests, 4);
        // Counts taken in the next interval go there; a report taken after the first
        // interval ended, once acknowledged, lets it go.
        m.add(T0 + METER_INTERVAL_MS + 5, &[taken("a", 1, 1)]);
        let (report, sent) = m.report(T0 + METER_INTERVAL_MS + 5).expect("waiting");
        assert_eq!(report.samples.len(), 2);
        m.acknowledged(&sent);
        let (report, _) = m.report(T0 + METER_INTERVAL_MS + 6).expect("waiting");
        assert_eq!(report.samples.len(), 1);
        assert_eq!(report.samples[0].start_ms, T0 + METER_INTERVAL_MS);
    }

    #[test]
    fn a_report_holds_at_most_the_limit_oldest_first_and_only_what_it_held_is_forgotten() {
        let mut m = Meter::new(u64::MAX);
        assert!(m.report(T0).is_none());
        for i in 0..(MAX_METER_SAMPLES as u64 + 10) {
            m.add(T0 + i * METER_INTERVAL_MS, &[taken("a", 1, 1)]);
        }
        let now = T0 + 10_000 * METER_INTERVAL_MS;
        let (report, sent) = m.report(now).expect("waiting");
        assert_eq!(report.epoch, u64::MAX >> 1, "epochs stay below 2^63");
        assert_eq!(report.samples.len(), MAX_METER_SAMPLES);
        assert_eq!(report.samples[0].start_ms, T0);
        m.acknowledged(&sent);
        assert_eq!(m.waiting(), 10);
    }

    #[test]
    fn each_address_the_node_was_reached_on_keeps_its_own_totals() {
        let mut m = Meter::new(1);
        let at = |a: &str, requests: u64| UsageSample {
            address: Some(a.parse().expect("addr")),
            ..taken("a", requests, requests)
        };
        m.add(T0, &[at("10.0.0.1", 2), at("10.0.1.1", 3)]);
        m.add(T0 + 1, &[at("10.0.0.1", 1)]);
        let (report, _) = m.report(T0 + 2).expect("waiting");
        let got: Vec<(Option<IpAddr>, u64)> = report
            .samples
            .iter()
            .map(|s| (s.usage.address, s.usage.requests))
            .collect();
        assert_eq!(
            got,
            [
                (Some("10.0.0.1".parse().expect("addr")), 3),
                (Some("10.0.1.1".parse().expect("addr")), 3)
            ]
        );
    }

    #[test]
    fn past_the_limit_the_oldest_totals_are_dropped() {
        let mut m = Meter::new(1);
        let many: Vec<UsageSample> = (0..MAX_KEPT + 5)
            .map(|i| taken(&format!("s{i:06}"), 1, 1))
            .collect();
        m.add(T0, &many);
        assert_eq!(m.waiting(), MAX_KEPT);
    }
}
