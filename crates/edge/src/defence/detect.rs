//! The decision, once a second per service: which sources of the last second are attacking.
//! Pure, so flood and flash-crowd cases are tested without a network.
//!
//! - an address above `source_rps`, or a /24 (/48) above `prefix_rps`, is attacking;
//! - when the whole service is above `service_rps`, the ten busiest addresses are looked
//!   at together: if they carry at least `concentration_percent` of it, those of them
//!   above a fair share of the threshold are attacking; if not, it is a crowd of many
//!   ordinary clients (a flash crowd) and nobody is refused.

use std::net::IpAddr;

use ipnet::IpNet;
use lingjing_model::defence::{DefenceSettings, Dimension, MAX_TOP_SOURCES, SourceRate};

use super::window::Tally;

/// How many of the busiest addresses the concentration test adds up.
const TOP_FOR_CONCENTRATION: usize = 10;

/// What one second of a service shows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    /// Sources to refuse (addresses as /32 or /128, or prefixes), with their rate.
    pub attacking: Vec<(IpNet, u64, Dimension)>,
    /// The busiest sources of the second (addresses, else prefixes).
    pub top: Vec<SourceRate>,
    /// A surge above `service_rps` that was spread over many sources.
    pub crowd: bool,
}

/// Judges one second of `tally` (`total`: the service's requests in it) under `settings`.
pub fn judge(settings: &DefenceSettings, tally: &Tally, total: u64) -> Findings {
    let mut out = Findings::default();
    let mut sources: Vec<(IpAddr, u64)> = tally.sources.iter().map(|(a, n)| (*a, *n)).collect();
    sources.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut prefixes: Vec<(IpNet, u64)> = tally.prefixes.iter().map(|(p, n)| (*p, *n)).collect();
    prefixes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.top = sources
        .iter()
        .take(MAX_TOP_SOURCES)
        .map(|(a, n)| SourceRate {
            source: IpNet::from(*a),
            rps: *n,
        })
        .collect();
    if out.top.is_empty() {
        out.top = prefixes
            .iter()
            .take(MAX_TOP_SOURCES)
            .map(|(p, n)| SourceRate {
                source: *p,
                rps: *n,
            })
            .collect();
    }
    for (addr, n) in &sources {
        if *n >= u64::from(settings.source_rps) {
            out.attacking
                .push((IpNet::from(*addr), *n, Dimension::Source));
        }
    }
    // A prefix is attacking by what its addresses not already found send: one flooding
    // address does not take its neighbours down with it.
    let mut found: std::collections::HashMap<IpNet, u64> = std::collections::HashMap::new();
    for (source, n, _) in &out.attacking {
        *found
            .entry(lingjing_model::defence::aggregate(source.addr()))
            .or_default() += n;
    }
    for (prefix, n) in &prefixes {
        let rest = n.saturating_sub(found.get(prefix).copied().unwrap_or(0));
        if rest >= u64::from(settings.prefix_rps) {
            out.attacking.push((*prefix, rest, Dimension::Prefix));
        }
    }
    if settings.service_rps > 0 && total >= u64::from(settings.service_rps) {
        let top: Vec<&(IpAddr, u64)> = sources.iter().take(TOP_FOR_CONCENTRATION).collect();
        let carried: u64 = top.iter().map(|(_, n)| n).sum();
        if carried * 100 >= total * u64::from(settings.concentration_percent) {
            // A fair share: what each of the top sources would send if the threshold
            // were split evenly among them.
            let fair = u64::from(settings.service_rps) / TOP_FOR_CONCENTRATION as u64;
            for (addr, n) in top {
                let net = IpNet::from(*addr);
                if *n > fair.max(1) && !out.attacking.iter().any(|(s, ..)| *s == net) {
                    out.attacking.push((net, *n, Dimension::Concentration));
                }
            }
        } else {
            out.crowd = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(sources: &[(IpAddr, u64)]) -> (Tally, u64) {
        let mut t = Tally::default();
        for (a, n) in sources {
            t.sources.insert(*a, *n);
            *t.prefixes
                .entry(lingjing_model::defence::aggregate(*a))
                .or_default() += n;
        }
        let total = sources.iter().map(|(_, n)| n).sum();
        (t, total)
    }

    fn addr(i: u32) -> IpAddr {
        IpAddr::from((0x7f_09_00_00u32 + i).to_be_bytes())
    }

    #[test]
    fn a_flood_from_few_sources_is_found_and_a_crowd_is_not() {
        let settings = DefenceSettings {
            source_rps: 50,
            prefix_rps: 100_000,
            service_rps: 300,
            ..DefenceSettings::default()
        };
        // Flood: 8 sources at 60/s each, plus 20 ordinary clients at 2/s.
        let mut flood: Vec<(IpAddr, u64)> = (0..8).map(|i| (addr(i), 60)).collect();
        flood.extend((100..120).map(|i| (addr(i), 2)));
        let (t, total) = tally(&flood);
        let f = judge(&settings, &t, total);
        assert_eq!(f.attacking.len(), 8, "{f:?}");
        assert!(f.attacking.iter().all(|(_, n, _)| *n == 60));
        // Crowd: the same total rate from 240 sources at 2/s.
        let crowd: Vec<(IpAddr, u64)> = (0..240).map(|i| (addr(i * 256), 2)).collect();
        let (t, total) = tally(&crowd);
        let f = judge(&settings, &t, total);
        assert!(f.attacking.is_empty(), "{f:?}");
        assert!(f.crowd);
    }

    #[test]
    fn a_surge_carried_by_few_sources_below_the_per_source_threshold_is_an_attack() {
        let settings = DefenceSettings {
            source_rps: 1000,
            prefix_rps: 100_000,
            service_rps: 200,
            ..DefenceSettings::default()
        };
        let mut few: Vec<(IpAddr, u64)> = (0..4).map(|i| (addr(i), 90)).collect();
        few.extend((10..30).map(|i| (addr(i), 1)));
        let (t, total) = tally(&few);
        let f = judge(&settings, &t, total);
        assert_eq!(f.attacking.len(), 4, "{f:?}");
        assert!(
            f.attacking
                .iter()
                .all(|(_, _, d)| *d == Dimension::Concentration)
        );
    }

    #[test]
    fn one_flooding_address_does_not_take_its_prefix_down() {
        let settings = DefenceSettings {
            source_rps: 50,
            prefix_rps: 100,
            ..DefenceSettings::default()
        };
        let (t, total) = tally(&[(addr(1), 500), (addr(2), 3), (addr(3), 3)]);
        let f = judge(&settings, &t, total);
        assert_eq!(
            f.attacking,
            vec![(IpNet::from(addr(1)), 500, Dimension::Source)]
        );
    }

    #[test]
    fn a_busy_prefix_is_found_from_its_aggregate() {
        let settings = DefenceSettings {
            source_rps: 1000,
            prefix_rps: 100,
            ..DefenceSettings::default()
        };
        let mut t = Tally::default();
        let p: IpNet = "10.1.2.0/24".parse().unwrap();
        t.prefixes.insert(p, 150);
        let f = judge(&settings, &t, 150);
        assert_eq!(f.attacking, vec![(p, 150, Dimension::Prefix)]);
        assert_eq!(f.top[0].source, p);
    }
}
