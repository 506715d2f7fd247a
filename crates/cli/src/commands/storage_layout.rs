//! `lingjing storage layout show|apply`: the storage cluster layout kept by the control
//! plane (`GET`/`POST /v1/storage/layout`): which storage nodes take new blocks and their
//! shares (capacity over the total).

use anyhow::{Context, bail};
use lingjing_model::snapshot::StorageNodeStatus;
use lingjing_model::storage_layout::{LayoutChange, LayoutNode, StorageLayout};

use crate::args::{Global, LayoutSub};

pub async fn run(global: &Global, command: LayoutSub) -> anyhow::Result<()> {
    let c = crate::context::client(global)?;
    let current: StorageLayout = c
        .get("/v1/storage/layout")
        .await
        .map_err(super::resources::explain)?;
    match command {
        LayoutSub::Show => {
            if global.json {
                println!("{}", serde_json::to_string_pretty(&current)?);
                return Ok(());
            }
            let nodes: Vec<StorageNodeStatus> = c
                .get("/v1/storage/status")
                .await
                .map_err(super::resources::explain)?;
            print!("{}", describe(&current, &nodes));
            Ok(())
        }
        LayoutSub::Apply {
            version,
            capacity,
            remove,
            dry_run,
        } => {
            let next = changed(&current, version, &capacity, &remove)?;
            let path = if dry_run {
                "/v1/storage/layout?dry_run=true"
            } else {
                "/v1/storage/layout"
            };
            let change: LayoutChange = c
                .post(path, &next)
                .await
                .map_err(super::resources::explain)?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&change)?);
                return Ok(());
            }
            println!(
                "{} layout version {}: about {:.1}% of the pieces of new blocks ({} per block) go to other nodes than under version {}",
                if change.dry_run {
                    "Would apply"
                } else {
                    "Applied"
                },
                change.layout.version,
                change.moved_fraction * 100.0,
                change.pieces,
                current.version
            );
            print!("{}", describe_shares(&change));
            Ok(())
        }
    }
}

/// The layout `current` with the capacities `NODE=GIB` set and the nodes `remove` taken
/// out, as `version`.
fn changed(
    current: &StorageLayout,
    version: u64,
    capacity: &[String],
    remove: &[String],
) -> anyhow::Result<StorageLayout> {
    if capacity.is_empty() && remove.is_empty() {
        bail!("nothing to change: give --capacity NODE=GIB or --remove NODE");
    }
    let mut next = StorageLayout {
        version,
        nodes: current.nodes.clone(),
        applied_at: None,
    };
    for spec in capacity {
        let (node, gib) = spec
            .split_once('=')
            .with_context(|| format!("--capacity {spec:?}: give NODE=GIB, e.g. wuxi-1-s1=500"))?;
        let gib: u64 = gib.parse().with_context(|| {
            format!("--capacity {spec:?}: {gib:?} is not a whole number of GiB")
        })?;
        match next.nodes.iter_mut().find(|n| n.node == node) {
            Some(n) => n.capacity_gib = gib,
            None => next.nodes.push(LayoutNode {
                node: node.to_owned(),
                capacity_gib: gib,
            }),
        }
    }
    for node in remove {
        let before = next.nodes.len();
        next.nodes.retain(|n| &n.node != node);
        if next.nodes.len() == before {
            bail!(
                "--remove {node}: it is not in layout version {}",
                current.version
            );
        }
    }
    Ok(next)
}

/// Each node's share of new pieces beside its share of capacity, the usable capacity,
/// and the control plane's warnings, after `layout apply`.
fn describe_shares(change: &LayoutChange) -> String {
    let mut out = format!(
        "{:<24} {:<16} {:>12} {:>14} {:>12}\n",
        "NODE", "SITE", "CAPACITY", "CAPACITY SHARE", "PIECE SHARE"
    );
    for s in &change.shares {
        out += &format!(
            "{:<24} {:<16} {:>12} {:>13.1}% {:>11.1}%\n",
            s.node,
            s.site,
            format!("{} GiB", s.capacity_gib),
            s.capacity_share * 100.0,
            s.piece_share * 100.0
        );
    }
    out += &format!(
        "Raw capacity usable before the first node is full: {} GiB\n",
        change.usable_gib
    );
    for w in &change.warnings {
        out += &format!("warning: {w}\n");
    }
    out
}

/// The text of `layout show`.
fn describe(layout: &StorageLayout, nodes: &[StorageNodeStatus]) -> String {
    let total: u64 = layout.nodes.iter().map(|n| n.capacity_gib).sum();
    let mut out = match (layout.version, &layout.applied_at) {
        (0, _) => {
            "Layout version 0 (none applied: every storage node takes an equal share)\n".to_owned()
        }
        (v, Some(at)) => format!("Layout version {v}, applied {at}\n"),
        (v, None) => format!("Layout version {v}\n"),
    };
    out += &format!(
        "{:<24} {:<16} {:>12} {:>7}\n",
        "NODE", "SITE", "CAPACITY", "SHARE"
    );
    for n in &layout.nodes {
        let site = nodes
            .iter()
            .find(|s| s.node.node.id == n.node)
            .map_or("?", |s| s.node.node.site.as_str());
        let capacity = if layout.version == 0 {
            "-".to_owned()
        } else {
            format!("{} GiB", n.capacity_gib)
        };
        let share = if total == 0 {
            0.0
        } else {
            n.capacity_gib as f64 * 100.0 / total as f64
        };
        out += &format!("{:<24} {site:<16} {capacity:>12} {share:>6.1}%\n", n.node);
    }
    for s in nodes {
        if !layout.nodes.iter().any(|n| n.node == s.node.node.id) {
            out += &format!(
                "{:<24} {:<16} {:>12} {:>7}   (not in the layout: takes nothing new)\n",
                s.node.node.id, s.node.node.site, "-", "0.0%"
            );
        }
    }
    out += &format!(
        "Change it with: lingjing storage layout apply --version {} --capacity NODE=GIB [--remove NODE]\n",
        layout.version + 1
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_to_the_layout_in_effect() {
        let current = StorageLayout {
            version: 0,
            nodes: vec![
                LayoutNode {
                    node: "a".into(),
                    capacity_gib: 1,
                },
                LayoutNode {
                    node: "b".into(),
                    capacity_gib: 1,
                },
            ],
            applied_at: None,
        };
        let next = changed(
            &current,
            1,
            &["a=500".into(), "c=250".into()],
            &["b".into()],
        )
        .expect("changed");
        assert_eq!(next.version, 1);
        assert_eq!(
            next.nodes,
            vec![
                LayoutNode {
                    node: "a".into(),
                    capacity_gib: 500
                },
                LayoutNode {
                    node: "c".into(),
                    capacity_gib: 250
                },
            ]
        );
        assert!(changed(&current, 1, &[], &[]).is_err());
        assert!(changed(&current, 1, &["a".into()], &[]).is_err());
        assert!(changed(&current, 1, &["a=lots".into()], &[]).is_err());
        assert!(changed(&current, 1, &[], &["zz".into()]).is_err());
    }
}
