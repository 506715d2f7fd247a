//! Fleet rollouts of a model version, as pure decisions (no I/O, no clock: the caller
//! passes `now` and what the nodes last reported, and stores what comes back).
//!
//! A rollout walks its groups in order (e.g. one canary, 10%, 50%, 100%). A group's
//! nodes are given the version together; the next group starts once enough of them have
//! *committed* it (passed probation on the node), never merely downloaded it. A node
//! fails when it reports the version failed or rolled back, or when it has not committed
//! within its deadline — counted only while it heartbeats, so a node that is offline is
//! pending, not failed (hawkBit #693, Greengrass's stuck deployments). When failures
//! reach the error threshold the rollout stops and every node it touched is told to go
//! back to its previous committed version. Paused, aborted, finished or superseded
//! rollouts decide nothing.

use std::collections::BTreeMap;

use lingjing_model::aiot::Probation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a rollout proceeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutPlan {
    /// Node ids per group, in the order the groups go.
    pub groups: Vec<Vec<String>>,
    /// Share of a group's nodes (percent, 1 to 100) that must have committed before the
    /// next group starts.
    pub success_percent: u8,
    /// Failed nodes (over all groups so far) that stop the rollout and roll it back.
    pub error_threshold: u32,
    /// Heartbeating time a node has from being given the version to committing it.
    pub node_deadline_ms: i64,
    /// A node silent this long is offline (its deadline does not run).
    pub offline_after_ms: i64,
    /// What the version must do on each node before it commits there.
    #[serde(default)]
    pub probation: Probation,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    /// Stopped by hand; resumes where it was.
    Paused,
    /// Every group reached its success share.
    Succeeded,
    /// Failures reached the threshold: the touched nodes were rolled back.
    RolledBack,
    /// Stopped by hand for good: the touched nodes were rolled back.
    Aborted,
    /// A newer rollout of the same slot took over (nothing rolled back: it decides now).
    Superseded,
}

/// What a rollout remembers between steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutProgress {
    pub state: RolloutState,
    /// The group being rolled out (every group before it reached its share).
    pub group: usize,
    /// Nodes given the version, and their heartbeating time since, in ms.
    pub active_ms: BTreeMap<String, i64>,
    /// Nodes that failed, and why.
    pub failed: BTreeMap<String, String>,
    /// When the last step ran (ms since the epoch); none before the first.
    pub last_step_ms: Option<i64>,
    /// Why it stopped, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RolloutProgress {
    /// A rollout that has not started.
    pub fn new() -> RolloutProgress {
        RolloutProgress {
            state: RolloutState::Running,
            group: 0,
            active_ms: BTreeMap::new(),
            failed: BTreeMap::new(),
            last_step_ms: None,
            reason: None,
        }
    }
}

impl Default for RolloutProgress {
    fn default() -> Self {
        RolloutProgress::new()
    }
}

/// What a node's slot says about the rollout's version (from its last heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// When its last heartbeat came (ms since the epoch).
    pub heartbeat_ms: i64,
    /// Where the rollout's version is on the node.
    pub phase: SlotPhase,
    /// Why, when it failed.
    pub reason: Option<String>,
}

/// A version's way through a node's slot, as the node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotPhase {
    /// Not started (or the node does not know the version yet).
    Waiting,
    /// Fetching, verifying, loading, self-testing, staged or on probation.
    InProgress,
    Committed,
    /// Failed a step or probation; the node went back to its previous version.
    Failed,
}

/// What the caller must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Give the node the rollout's version.
    Assign(String),
    /// Send the node back to its previous committed version.
    RollBack(String),
}

/// One step at `now_ms` over the nodes' last `reports` (a node without one has never
/// heartbeated): the progress to store and what to do.
pub fn step(
    plan: &RolloutPlan,
    progress: &RolloutProgress,
    reports: &BTreeMap<String, NodeReport>,
    now_ms: i64,
) -> (RolloutProgress, Vec<Action>) {
    let mut next = progress.clone();
    let mut actions = Vec::new();
    if progress.state != RolloutState::Running {
        next.last_step_ms = Some(now_ms);
        return (next, actions);
    }
    let online = |node: &str| {
        reports
            .get(node)
            .is_some_and(|r| now_ms - r.heartbeat_ms <= plan.offline_after_ms)
    };
    // Deadlines run only while a node heartbeats.
    let elapsed = progress.last_step_ms.map_or(0, |t| (now_ms - t).max(0));
    for (node, active) in next.active_ms.iter_mut() {
        if online(node) {
            *active += elapsed;
        }
    }
    next.last_step_ms = Some(now_ms);
    loop {
        let Some(group) = plan.groups.get(next.group) else {
            next.state = RolloutState::Succeeded;
            break;
        };
        for node in group {
            if !next.active_ms.contains_key(node) {
                next.active_ms.insert(node.clone(), 0);
                actions.push(Action::Assign(node.clone()));
            }
        }
        // Outcomes of every node touched so far.
        for (node, active) in &next.active_ms {
            if next.failed.contains_key(node) {
                continue;
            }
            let report = reports.get(node);
            match report.map(|r| r.phase) {
                Some(SlotPhase::Committed) => {}
                Some(SlotPhase::Failed) => {
                    let why = report
                        .and_then(|r| r.reason.clone())
                        .unwrap_or_else(|| "the node reported the version failed".into());
                    next.failed.insert(node.clone(), why);
                }
                _ if *active > plan.node_deadline_ms && online(node) => {
                    next.failed.insert(
                        node.clone(),
                        format!(
                            "not committed within {} s of heartbeating",
                            plan.node_deadline_ms / 1000
                        ),
                    );
                }
                _ => {}
            }
        }
        if next.failed.len() as u64 >= u64::from(plan.error_threshold.max(1)) {
            next.state = RolloutState::RolledBack;
            next.reason = Some(format!(
                "{} of the nodes failed (threshold {}): rolled back",
                next.failed.len(),
                plan.error_threshold.max(1)
            ));
            actions.retain(|a| !matches!(a, Action::Assign(_)));
            actions.extend(next.active_ms.keys().cloned().map(Action::RollBack));
            break;
        }
        let committed = group
            .iter()
            .filter(|n| {
                !next.failed.contains_key(*n)
                    && reports
                        .get(*n)
                        .is_some_and(|r| r.phase == SlotPhase::Committed)
            })
            .count();
        let needed = (group.len() * usize::from(plan.success_percent.clamp(1, 100))).div_ceil(100);
        if committed < needed {
            break;
        }
        next.group += 1;
    }
    (next, actions)
}

/// Stops a running or paused rollout by hand: every node it touched goes back.
pub fn abort(progress: &RolloutProgress, why: &str) -> (RolloutProgress, Vec<Action>) {
    let mut next = progress.clone();
    if !matches!(progress.state, RolloutState::Running | RolloutState::Paused) {
        return (next, Vec::new());
    }
    next.state = RolloutState::Aborted;
    next.reason = Some(why.to_owned());
    let actions = next
        .active_ms
        .keys()
        .cloned()
        .map(Action::RollBack)
        .collect();
    (next, actions)
}

/// Stops a running rollout by hand, where it is; `None` when it is not running.
pub fn pause(progress: &RolloutProgress) -> Option<RolloutProgress> {
    (progress.state == RolloutState::Running).then(|| RolloutProgress {
        state: RolloutState::Paused,
        ..progress.clone()
    })
}

/// Lets a paused rollout go on at `now_ms`; `None` when it is not paused. The time it
/// spent paused counts against no node's deadline.
pub fn resume(progress: &RolloutProgress, now_ms: i64) -> Option<RolloutProgress> {
    (progress.state == RolloutState::Paused).then(|| RolloutProgress {
        state: RolloutState::Running,
        last_step_ms: progress.last_step_ms.map(|_| now_ms),
        ..progress.clone()
    })
}

/// A newer rollout of the same slot took over a running or paused one; `None` when it
/// had stopped already. Nothing goes back: the newer rollout decides now.
pub fn supersede(progress: &RolloutProgress, why: &str) -> Option<RolloutProgress> {
    matches!(progress.state, RolloutState::Running | RolloutState::Paused).then(|| {
        RolloutProgress {
            state: RolloutState::Superseded,
            reason: Some(why.to_owned()),
            ..progress.clone()
        }
    })
}

/// Cuts `nodes` (each with its site) into a rollout's groups: ordered so that sites
/// interleave (one node of each site in turn, sites by id, a site's nodes by id), the
/// first `canary` nodes, then for each of `percents` (ascending) the nodes up to that
/// cumulative share of all of them (rounded up) not in an earlier group. Empty groups are
/// dropped, and the last group always reaches every node.
pub fn groups(nodes: &[(String, String)], canary: usize, percents: &[u8]) -> Vec<Vec<String>> {
    let mut by_site: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, site) in nodes {
        by_site
            .entry(site.as_str())
            .or_default()
            .push(node.as_str());
    }
    for site in by_site.values_mut() {
        site.sort_unstable();
        site.dedup();
    }
    let mut order: Vec<String> = Vec::with_capacity(nodes.len());
    for round in 0.. {
        let before = order.len();
        for site in by_site.values() {
            if let Some(node) = site.get(round) {
                order.push((*node).to_owned());
            }
        }
        if order.len() == before {
            break;
        }
    }
    let total = order.len();
    let mut ends = vec![canary.min(total)];
    ends.extend(
        percents
            .iter()
            .map(|p| (total * usize::from((*p).min(100))).div_ceil(100)),
    );
    ends.push(total);
    let mut out = Vec::new();
    let mut start = 0;
    for end in ends {
        if end > start {
            out.push(order[start..end].to_vec());
            start = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(groups: &[&[&str]], success_percent: u8, error_threshold: u32) -> RolloutPlan {
        RolloutPlan {
            groups: groups
                .iter()
                .map(|g| g.iter().map(|n| (*n).to_owned()).collect())
                .collect(),
            success_percent,
            error_threshold,
            node_deadline_ms: 600_000,
            offline_after_ms: 60_000,
            probation: Probation::default(),
        }
    }

    fn reports(at: i64, nodes: &[(&str, SlotPhase)]) -> BTreeMap<String, NodeReport> {
        nodes
            .iter()
            .map(|(n, phase)| {
                (
                    (*n).to_owned(),
                    NodeReport {
                        heartbeat_ms: at,
                        phase: *phase,
                        reason: None,
                    },
                )
            })
            .collect()
    }

    fn assigned(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Assign(n) => Some(n.as_str()),
                Action::RollBack(_) => None,
            })
            .collect()
    }

    use SlotPhase::{Committed, Failed, InProgress};

    #[test]
    fn groups_follow_only_committed_nodes() {
        let p = plan(&[&["canary"], &["a", "b"], &["c", "d", "e"]], 100, 1);
        let (s, act) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        assert_eq!(assigned(&act), ["canary"]);
        // Downloaded and on probation is not enough.
        let (s, act) = step(&p, &s, &reports(10, &[("canary", InProgress)]), 10);
        assert!(act.is_empty() && s.group == 0);
        let (s, act) = step(&p, &s, &reports(20, &[("canary", Committed)]), 20);
        assert_eq!((assigned(&act), s.group), (vec!["a", "b"], 1));
        let r = reports(
            30,
            &[("canary", Committed), ("a", Committed), ("b", InProgress)],
        );
        let (s, act) = step(&p, &s, &r, 30);
        assert!(act.is_empty(), "100% of the group is needed");
        let r = reports(
            40,
            &[("canary", Committed), ("a", Committed), ("b", Committed)],
        );
        let (s, act) = step(&p, &s, &r, 40);
        assert_eq!(assigned(&act), ["c", "d", "e"]);
        let mut r = reports(50, &[("c", Committed), ("d", Committed), ("e", Committed)]);
        r.extend(reports(
            50,
            &[("canary", Committed), ("a", Committed), ("b", Committed)],
        ));
        let (s, act) = step(&p, &s, &r, 50);
        assert!(act.is_empty());
        assert_eq!(s.state, RolloutState::Succeeded);
        // Finished: later steps decide nothing.
        assert_eq!(step(&p, &s, &r, 60).1, Vec::new());
    }

    #[test]
    fn a_share_below_100_lets_the_next_group_start_early() {
        let p = plan(&[&["a", "b", "c", "d"], &["e"]], 50, 3);
        let (s, _) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        let r = reports(5, &[("a", Committed), ("b", Committed), ("c", InProgress)]);
        let (s, act) = step(&p, &s, &r, 5);
        assert_eq!(assigned(&act), ["e"], "2 of 4 is 50%");
        assert_eq!(s.group, 1);
    }

    #[test]
    fn failures_at_the_threshold_roll_back_every_touched_node() {
        let p = plan(&[&["canary"], &["a", "b"]], 100, 1);
        let (s, _) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        let mut r = reports(10, &[("canary", Failed)]);
        r.get_mut("canary").expect("canary").reason = Some("self-test: output off by 0.4".into());
        let (s, act) = step(&p, &s, &r, 10);
        assert_eq!(s.state, RolloutState::RolledBack);
        assert_eq!(act, [Action::RollBack("canary".into())]);
        assert_eq!(s.failed["canary"], "self-test: output off by 0.4");
        assert!(
            !s.active_ms.contains_key("a"),
            "the other nodes never see it"
        );
        // Threshold 2: one failure in the second group does not stop it.
        let p = plan(&[&["canary"], &["a", "b", "c"]], 60, 2);
        let (s, _) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        let (s, _) = step(&p, &s, &reports(1, &[("canary", Committed)]), 1);
        let mut r = reports(2, &[("canary", Committed), ("a", Failed), ("b", Committed)]);
        let (s2, act) = step(&p, &s, &r, 2);
        assert_eq!(s2.state, RolloutState::Running);
        assert!(act.is_empty());
        r.insert("c".into(), reports(3, &[("c", Failed)])["c"].clone());
        let (s3, act) = step(&p, &s2, &r, 3);
        assert_eq!(s3.state, RolloutState::RolledBack);
        let mut back: Vec<&Action> = act.iter().collect();
        back.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(back.len(), 4, "canary, a, b and c: {act:?}");
    }

    #[test]
    fn deadlines_run_only_while_a_node_heartbeats() {
        let p = plan(&[&["far"]], 100, 1);
        let (s, _) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        // Silent for an hour: pending offline, not failed.
        let quiet = reports(0, &[("far", InProgress)]);
        let (s, act) = step(&p, &s, &quiet, 3_600_000);
        assert!(act.is_empty() && s.failed.is_empty(), "{s:?}");
        assert_eq!(s.active_ms["far"], 0);
        // Back, heartbeating but never committing: fails after its 10 minutes of it.
        let mut s = s;
        let mut at = 3_600_000;
        while s.state == RolloutState::Running && at < 3_600_000 + 3_600_000 {
            at += 30_000;
            s = step(&p, &s, &reports(at, &[("far", InProgress)]), at).0;
        }
        assert_eq!(s.state, RolloutState::RolledBack);
        assert!(
            at - 3_600_000 > 600_000 && at - 3_600_000 <= 660_000,
            "{at}"
        );
        assert!(s.failed["far"].contains("not committed within 600 s"));
    }

    #[test]
    fn paused_aborted_and_superseded_rollouts_decide_nothing() {
        let p = plan(&[&["a"], &["b"]], 100, 1);
        let (s, _) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        let mut paused = s.clone();
        paused.state = RolloutState::Paused;
        let r = reports(5, &[("a", Committed)]);
        let (p2, act) = step(&p, &paused, &r, 5);
        assert!(act.is_empty() && p2.group == 0);
        // Resumed: it goes on where it was.
        let mut resumed = p2;
        resumed.state = RolloutState::Running;
        let (s2, act) = step(&p, &resumed, &r, 6);
        assert_eq!(assigned(&act), ["b"]);
        let (aborted, act) = abort(&s2, "by hand");
        assert_eq!(aborted.state, RolloutState::Aborted);
        assert_eq!(act.len(), 2, "a and b go back");
        assert!(abort(&aborted, "again").1.is_empty());
        assert!(supersede(&aborted, "newer").is_none());
        let superseded = supersede(&s2, "by rollout 2").expect("running");
        assert_eq!(superseded.state, RolloutState::Superseded);
        assert_eq!(superseded.active_ms, s2.active_ms);
        assert!(step(&p, &superseded, &r, 7).1.is_empty());
    }

    fn nodes(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn groups_interleave_sites_and_grow_by_cumulative_share() {
        // Site b has three nodes, a two, c one: listed in no order.
        let all = nodes(&[
            ("b-2", "b"),
            ("a-1", "a"),
            ("c-1", "c"),
            ("b-1", "b"),
            ("a-2", "a"),
            ("b-3", "b"),
        ]);
        let g = groups(&all, 1, &[10, 50, 100]);
        // Order: a-1 b-1 c-1 a-2 b-2 b-3. Canary a-1; 10% of 6 is 1 (nothing new, dropped);
        // 50% is 3; 100% is 6.
        assert_eq!(
            g,
            vec![
                vec!["a-1".to_owned()],
                vec!["b-1".to_owned(), "c-1".to_owned()],
                vec!["a-2".to_owned(), "b-2".to_owned(), "b-3".to_owned()],
            ]
        );
        // Shares that stop short: the last group still reaches every node.
        let g = groups(&all, 2, &[50]);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 3]);
        assert_eq!(g.concat().len(), 6);
        // No canary, one share: one group of everything.
        assert_eq!(groups(&all, 0, &[100]).len(), 1);
        // More canaries than nodes: one group.
        assert_eq!(groups(&all[..2], 5, &[10, 100]).len(), 1);
        // Rounded up: 10% of 25 is 3.
        let many: Vec<(String, String)> = (0..25)
            .map(|i| (format!("n-{i:02}"), "s".to_owned()))
            .collect();
        let g = groups(&many, 1, &[10, 50, 100]);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2, 10, 12]);
        assert!(groups(&[], 1, &[100]).is_empty());
    }

    #[test]
    fn paused_time_counts_against_no_deadline() {
        let p = plan(&[&["a"]], 100, 1);
        let (s, _) = step(&p, &RolloutProgress::new(), &BTreeMap::new(), 0);
        let (s, _) = step(&p, &s, &reports(1_000, &[("a", InProgress)]), 1_000);
        assert_eq!(s.active_ms["a"], 1_000);
        let paused = pause(&s).expect("running");
        assert!(pause(&paused).is_none() && resume(&s, 0).is_none());
        // Paused for an hour (the driver does not step it), then resumed.
        let resumed = resume(&paused, 3_601_000).expect("paused");
        assert_eq!(resumed.state, RolloutState::Running);
        let r = reports(3_602_000, &[("a", InProgress)]);
        let (s, act) = step(&p, &resumed, &r, 3_602_000);
        assert!(act.is_empty() && s.failed.is_empty(), "{s:?}");
        assert_eq!(s.active_ms["a"], 2_000);
    }
}
