//! Applying purges from the edge snapshot to the cache: by exact URL, by URL prefix or by
//! tag, hard (remove) or soft (mark stale, keeping the object for stale-while-revalidate
//! and revalidation).

use std::sync::Arc;
use std::time::Duration;

use lingjing_model::purge::split_url;
use lingjing_model::service::host_matches;
use lingjing_model::{Purge, PurgeKind, PurgeMode, Service};

use crate::cache::key;
use crate::cache::store::{CachedResponse, Entry, Storage};

/// Applies `purge` (of `service`) to `store`; returns how many cache keys it touched.
pub fn apply(store: &dyn Storage, purge: &Purge, service: Option<&Service>) -> usize {
    let keys = store.keys();
    let mut touched = 0;
    let hosts: Vec<&str> = service
        .map(|s| s.hostnames.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let rules = service.map(|s| s.cache_rules.as_slice()).unwrap_or(&[]);
    let host_of_service = |host: &str| hosts.iter().any(|h| host_matches(h, host));
    for k in keys {
        let matched = match purge.kind {
            PurgeKind::Url => purge.targets.iter().any(|t| {
                split_url(t).is_some_and(|(host, pq)| {
                    let path = pq.split('?').next().unwrap_or(&pq);
                    key::key_url(&k) == key::url_key(&host, &pq, key::rule_for(rules, path))
                })
            }),
            PurgeKind::Prefix => purge.targets.iter().any(|t| {
                split_url(t).is_some_and(|(host, prefix)| {
                    k.starts_with(&key::url_prefix_key(&host, &prefix))
                })
            }),
            PurgeKind::Tag => {
                key::key_host_and_path(&k).is_some_and(|(h, _)| host_of_service(h))
                    && store.get(&k).is_some_and(|e| {
                        e.variants
                            .iter()
                            .any(|v| v.tags.iter().any(|tag| purge.targets.contains(tag)))
                    })
            }
        };
        if !matched {
            continue;
        }
        touched += 1;
        match purge.mode {
            PurgeMode::Hard => store.remove(&k),
            PurgeMode::Soft => {
                if let Some(e) = store.get(&k) {
                    store.put(k.to_string(), Arc::new(expired(&e)));
                }
            }
        }
    }
    touched
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
