//! Uptime and SLA: availability of nodes, sites and services over a window, computed from
//! the recorded health changes — the question the operator asks of its own suppliers
//! ("did they meet 99.90% this month, and by how much did they miss?").
//!
//! A node is down between a change to unhealthy and the next change to healthy; before
//! its first recorded change it counts as up. A site is down while none of its edge and
//! parent nodes is up; a service while none of the nodes that may serve it is up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

/// One availability figure.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Availability {
    /// `node`, `site` or `service`.
    pub kind: &'static str,
    pub id: String,
    /// Percent of the window up, e.g. 99.95.
    pub availability: f64,
    pub downtime_minutes: f64,
    /// Percentage points below the target (0 when met).
    pub shortfall: f64,
    pub meets_target: bool,
}

/// The report for a window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlaReport {
    pub from: String,
    pub to: String,
    pub target: f64,
    /// Everything measured.
    pub entries: Vec<Availability>,
    /// The entries below the target, worst first.
    pub below_target: Vec<Availability>,
}

/// A health change: (time in ms, healthy).
pub type Change = (i64, bool);

/// The down intervals of one node within `[from, to)`, from its changes (sorted by time).
pub fn down_intervals(changes: &[Change], from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut state_up = changes
        .iter()
        .take_while(|(t, _)| *t <= from)
        .last()
        .is_none_or(|(_, up)| *up);
    let mut since = from;
    for &(t, up) in changes.iter().filter(|(t, _)| *t > from && *t < to) {
        if state_up && !up {
            since = t;
        } else if !state_up && up {
            out.push((since, t));
        }
        state_up = up;
    }
    if !state_up {
        out.push((since, to));
    }
    out
}

/// Milliseconds within `[from, to)` during which every one of `nodes` was down.
pub fn all_down_ms(nodes: &[&[(i64, i64)]], from: i64, to: i64) -> i64 {
    if nodes.is_empty() {
        return 0;
    }
    // Sweep: count how many nodes are down at each moment.
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for intervals in nodes {
        for &(a, b) in *intervals {
            edges.push((a.max(from), 1));
            edges.push((b.min(to), -1));
        }
    }
    edges.sort();
    let (mut down, mut last, mut total) = (0i32, from, 0i64);
    let everyone = nodes.len() as i32;
    for (t, d) in edges {
        if down == everyone {
            total += t - last;
        }
        down += d;
        last = t;
    }
    total
}

/// The intervals within `[from, to)` during which every one of `nodes` was down (none
/// when `nodes` is empty: nothing may serve, which is no outage of a running service).
pub fn all_down_intervals(nodes: &[&[(i64, i64)]], from: i64, to: i64) -> Vec<(i64, i64)> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for intervals in nodes {
        for &(a, b) in *intervals {
            let (a, b) = (a.max(from), b.min(to));
            if a < b {
                edges.push((a, 1));
                edges.push((b, -1));
            }
        }
    }
    // Ends before starts at the same moment: touching intervals do not overlap.
    edges.sort_by_key(|&(t, d)| (t, d));
    let everyone = nodes.len() as i32;
    let (mut down, mut since, mut out) = (0i32, from, Vec::new());
    for (t, d) in edges {
        let was = down == everyone;
        down += d;
        let is = down == everyone;
        if !was && is {
            since = t;
        } else if was && !is && since < t {
            out.push((since, t));
        }
    }
    out
}

/// One availability entry.
pub fn entry(
    kind: &'static str,
    id: &str,
    down_ms: i64,
    window_ms: i64,
    target: f64,
) -> Availability {
    let window = window_ms.max(1) as f64;
    let availability = 100.0 * (1.0 - down_ms as f64 / window);
    let shortfall = (target - availability).max(0.0);
    Availability {
        kind,
        id: id.to_owned(),
        availability: (availability * 1_000_000.0).round() / 1_000_000.0,
        downtime_minutes: (down_ms as f64 / 60.0).round() / 1000.0,
        shortfall: (shortfall * 1_000_000.0).round() / 1_000_000.0,
        meets_target: availability >= target,
    }
}

/// A group of nodes measured together (a site, a service): its kind, id and members.
/// Groups with the same members share one `Arc` (most services may use every edge), so
/// their downtime is computed once.
pub type Group = (&'static str, String, Arc<[String]>);

/// Builds the report from per-node changes and the groups (sites, services) of nodes.
pub fn report(
    changes: &BTreeMap<String, Vec<Change>>,
    nodes: &[String],
    groups: &[Group],
    from: i64,
    to: i64,
    target: f64,
) -> (Vec<Availability>, Vec<Availability>) {
    let window = to - from;
    let empty = Vec::new();
    let down: BTreeMap<&str, Vec<(i64, i64)>> = nodes
        .iter()
        .map(|n| {
            (
                n.as_str(),
                down_intervals(changes.get(n).unwrap_or(&empty), from, to),
            )
        })
        .collect();
    let mut entries = Vec::new();
    for n in nodes {
        let ms: i64 = down[n.as_str()].iter().map(|(a, b)| b - a).sum();
        entries.push(entry("node", n, ms, window, target));
    }
    let mut known: HashMap<*const [String], i64> = HashMap::new();
    for (kind, id, members) in groups {
        let ms = *known.entry(Arc::as_ptr(members)).or_insert_with(|| {
            let sets: Vec<&[(i64, i64)]> = members
                .iter()
                .filter_map(|m| down.get(m.as_str()).map(Vec::as_slice))
                .collect();
            all_down_ms(&sets, from, to)
        });
        entries.push(entry(kind, id, ms, window, target));
    }
    let mut below: Vec<Availability> = entries
        .iter()
        .filter(|e| !e.meets_target)
        .cloned()
        .collect();
    below.sort_by(|a, b| a.availability.total_cmp(&b.availability));
    (entries, below)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_time_is_measured_inside_the_window() {
        // Down at 100, up at 400, down at 900 (until the end).
        let changes = [(50, true), (100, false), (400, true), (900, false)];
        assert_eq!(
            down_intervals(&changes, 0, 1000),
            vec![(100, 400), (900, 1000)]
        );
        // A window starting while down.
        assert_eq!(down_intervals(&changes, 200, 500), vec![(200, 400)]);
        // Nothing recorded: up.
        assert!(down_intervals(&[], 0, 1000).is_empty());
    }

    #[test]
    fn a_group_is_down_only_while_all_its_nodes_are() {
        let a = [(100, 400)];
        let b = [(300, 600)];
        assert_eq!(all_down_ms(&[&a, &b], 0, 1000), 100);
        assert_eq!(all_down_ms(&[&a], 0, 1000), 300);
        assert_eq!(all_down_ms(&[], 0, 1000), 0);
    }

    #[test]
    fn all_down_intervals_are_those_where_every_node_was_down() {
        let a = [(100, 400), (700, 800)];
        let b = [(300, 600), (750, 900)];
        assert_eq!(
            all_down_intervals(&[&a, &b], 0, 1000),
            vec![(300, 400), (750, 800)]
        );
        assert_eq!(all_down_intervals(&[&a], 0, 350), vec![(100, 350)]);
        assert!(all_down_intervals(&[], 0, 1000).is_empty());
        // Touching, not overlapping.
        assert!(all_down_intervals(&[&[(0, 10)], &[(10, 20)]], 0, 100).is_empty());
    }

    #[test]
    fn the_report_names_what_missed_the_target() {
        let mut changes = BTreeMap::new();
        // 1 minute down in a 1000-minute window: 99.9% exactly meets 99.90.
        changes.insert(
            "n1".to_owned(),
            vec![(0, true), (60_000, false), (120_000, true)],
        );
        changes.insert("n2".to_owned(), vec![(0, false)]);
        let nodes = vec!["n1".to_owned(), "n2".to_owned()];
        let groups: Vec<Group> = vec![("site", "s".to_owned(), nodes.clone().into())];
        let (entries, below) = report(&changes, &nodes, &groups, 0, 60_000_000, 99.9);
        assert_eq!(entries.len(), 3);
        assert!(entries[0].meets_target);
        assert_eq!(entries[0].downtime_minutes, 1.0);
        assert_eq!(below.len(), 1);
        assert_eq!(below[0].id, "n2");
        assert_eq!(below[0].availability, 0.0);
        assert_eq!(
            entries[2].downtime_minutes, 1.0,
            "the site was down only while both were"
        );
    }
}
