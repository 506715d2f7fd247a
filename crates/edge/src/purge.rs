//! Applying purges from the edge snapshot to the cache: by exact URL, by URL prefix or by
//! tag, hard (remove) or soft (mark stale, keeping the object for stale-while-revalidate
//! and revalidation).
//!
//! A purge only ever touches the entries of its own service: keys carry the service in
//! their namespace (`cache::key`), and the candidates come from the tiers' purge indexes
//! (`cache::index`) for the purge's service and the target's host (or tag), so a purge
//! whose URL names another service's hostname finds nothing of that service, and no purge
//! scans every key. A URL or prefix purge covers both schemes (`http://` and `https://`
//! copies alike), whichever scheme its target is written with.

use std::sync::Arc;
use std::time::Duration;

use lingjing_model::purge::split_url;
use lingjing_model::{Purge, PurgeKind, PurgeMode, Service};

use crate::cache::key::{self, Scheme};
use crate::cache::store::{CachedResponse, Entry, Storage};

/// Applies `purge` (of `service`, the snapshot's copy of `purge.service`; its cache rules
/// shape the keys of URL targets) to `store`; returns how many cache keys it touched.
pub fn apply(store: &dyn Storage, purge: &Purge, service: Option<&Service>) -> usize {
    let id = purge.service.as_str();
    let rules = service.map(|s| s.cache_rules.as_slice()).unwrap_or(&[]);
    let mut matched: Vec<Arc<String>> = Vec::new();
    for target in &purge.targets {
        match purge.kind {
            PurgeKind::Url => {
                let Some((host, pq)) = split_url(target) else {
                    continue;
                };
                let path = pq.split('?').next().unwrap_or(&pq);
                let rule = key::rule_for(rules, path);
                let urls: Vec<String> = Scheme::ALL
                    .iter()
                    .map(|s| key::url_key(&key::namespace(id, *s), &host, &pq, rule))
                    .collect();
                matched.extend(
                    store
                        .host_keys(&key::host_bucket(id, &host))
                        .into_iter()
                        .filter(|k| urls.iter().any(|u| key::key_url(k) == u)),
                );
            }
            PurgeKind::Prefix => {
                let Some((host, prefix)) = split_url(target) else {
                    continue;
                };
                let prefixes: Vec<String> = Scheme::ALL
                    .iter()
                    .map(|s| key::url_prefix_key(&key::namespace(id, *s), &host, &prefix))
                    .collect();
                matched.extend(
                    store
                        .host_keys(&key::host_bucket(id, &host))
                        .into_iter()
                        .filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str()))),
                );
            }
            PurgeKind::Tag => matched.extend(store.tag_keys(&key::tag_bucket(id, target))),
        }
    }
    matched.sort();
    matched.dedup();
    for k in &matched {
        match purge.mode {
            PurgeMode::Hard => store.remove(k),
            PurgeMode::Soft => {
                if let Some(e) = store.get(k) {
                    store.put(k.to_string(), Arc::new(expired(&e)));
                }
            }
        }
    }
    matched.len()
}

/// The entry with every variant stale (lifetime zero), windows kept.
fn expired(e: &Entry) -> Entry {
    Entry {
        vary: e.vary.clone(),
        variants: e
            .variants
            .iter()
            .map(|v| {
                let mut r: CachedResponse = (**v).clone();
                r.freshness.lifetime = Duration::ZERO;
                Arc::new(r)
            })
            .collect(),
    }
}

/// Removes everything (a node that may have missed purges).
pub fn flush(store: &dyn Storage) -> usize {
    let keys = store.keys();
    for k in &keys {
        store.remove(k);
    }
    keys.len()
}
