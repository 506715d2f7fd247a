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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lingjing_model::purge::split_url;
use lingjing_model::{Purge, PurgeKind, PurgeMode, Service};

use crate::cache::key::{self, Scheme};
use crate::cache::store::{CachedResponse, Entry, Storage};

/// Applies `purge` (of `service`, the snapshot's copy of `purge.service`; its cache rules
/// shape the keys of URL targets) to `store`; returns how many cache keys it touched.
///
/// Linear in the targets and the keys of the hosts they name: targets are grouped by host,
/// each host's index bucket is read once, and each of its keys is looked up in the set of
/// that host's target URLs (a prefix purge checks each key against that host's prefixes).
pub fn apply(store: &dyn Storage, purge: &Purge, service: Option<&Service>) -> usize {
    let id = purge.service.as_str();
    let namespaces = Scheme::ALL.map(|s| key::namespace(id, s));
    let mut matched: HashSet<Arc<String>> = HashSet::new();
    match purge.kind {
        PurgeKind::Url => {
            let rules = service.map(|s| s.cache_rules.as_slice()).unwrap_or(&[]);
            // Host -> the URL part of every key its targets name (both schemes).
            let mut by_host: HashMap<String, HashSet<String>> = HashMap::new();
            for (host, pq) in purge.targets.iter().filter_map(|t| split_url(t)) {
                let path = pq.split('?').next().unwrap_or(&pq);
                let rule = key::rule_for(rules, path);
                let urls: Vec<String> = namespaces
                    .iter()
                    .map(|ns| key::url_key(ns, &host, &pq, rule))
                    .collect();
                by_host.entry(host).or_default().extend(urls);
            }
            for (host, urls) in &by_host {
                matched.extend(
                    store
                        .host_keys(&key::host_bucket(id, host))
                        .into_iter()
                        .filter(|k| urls.contains(key::key_url(k))),
                );
            }
        }
        PurgeKind::Prefix => {
            // Host -> its key prefixes (both schemes).
            let mut by_host: HashMap<String, HashSet<String>> = HashMap::new();
            for (host, prefix) in purge.targets.iter().filter_map(|t| split_url(t)) {
                let prefixes: Vec<String> = namespaces
                    .iter()
                    .map(|ns| key::url_prefix_key(ns, &host, &prefix))
                    .collect();
                by_host.entry(host).or_default().extend(prefixes);
            }
            for (host, prefixes) in &by_host {
                matched.extend(
                    store
                        .host_keys(&key::host_bucket(id, host))
                        .into_iter()
                        .filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str()))),
                );
            }
        }
        PurgeKind::Tag => {
            let tags: HashSet<&str> = purge.targets.iter().map(String::as_str).collect();
            for tag in tags {
                matched.extend(store.tag_keys(&key::tag_bucket(id, tag)));
            }
        }
    }
    let mut matched: Vec<Arc<String>> = matched.into_iter().collect();
    matched.sort();
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use http::{HeaderMap, StatusCode};
    use lingjing_model::CacheRule;

    use super::*;
    use crate::cache::policy::Freshness;
    use crate::cache::store::MemoryStore;

    const HOST: &str = "h.example";

    fn entry() -> Arc<Entry> {
        let now = SystemTime::now();
        Arc::new(Entry::single(CachedResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from_static(b"x"),
            freshness: Freshness {
                lifetime: Duration::from_secs(600),
                initial_age: Duration::ZERO,
                stored_at: now,
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                must_revalidate: false,
            },
            variant: String::new(),
            tags: Vec::new(),
            stored_at: now,
        }))
    }

    fn k(service: &str, scheme: Scheme, host: &str, pq: &str) -> String {
        key::cache_key(
            &key::namespace(service, scheme),
            host,
            pq,
            None,
            &HeaderMap::new(),
        )
    }

    fn purge(kind: PurgeKind, mode: PurgeMode, targets: Vec<String>) -> Purge {
        Purge {
            id: 1,
            service: "a".to_owned(),
            kind,
            targets,
            mode,
            version: 1,
            created_at: "2025-01-01T00:00:00Z".to_owned(),
        }
    }

    fn fresh(store: &MemoryStore, key: &str) -> Option<bool> {
        store
            .get(key)
            .map(|e| e.variants[0].freshness.lifetime > Duration::ZERO)
    }

    /// 3000 objects on one host, in both schemes, beside another host and another service;
    /// a purge of 1000 of its URLs (plus targets that match nothing, duplicates, and
    /// another host) removes exactly those.
    #[test]
    fn a_url_purge_of_many_targets_on_one_host_removes_exactly_them() {
        let store = MemoryStore::new(256 << 20);
        let mut kept = Vec::new();
        let mut purged = Vec::new();
        for i in 0..3000 {
            for scheme in Scheme::ALL {
                let key = k("a", scheme, HOST, &format!("/o/{i}?v=1"));
                store.put(key.clone(), entry());
                if i % 3 == 0 { &mut purged } else { &mut kept }.push(key);
            }
        }
        // The same paths on another host and of another service: never touched.
        for i in 0..100 {
            for key in [
                k("a", Scheme::Http, "other.example", &format!("/o/{i}?v=1")),
                k("b", Scheme::Https, HOST, &format!("/o/{i}?v=1")),
            ] {
                store.put(key.clone(), entry());
                kept.push(key);
            }
        }
        let mut targets: Vec<String> = (0..3000)
            .step_by(3)
            .map(|i| format!("https://{HOST}/o/{i}?v=1"))
            .collect();
        assert_eq!(targets.len(), 1000);
        targets.push(format!("http://{HOST}/o/0?v=1"));
        targets.push(format!("http://{HOST}/o/1?v=2"));
        targets.push(format!("http://{HOST}/absent"));
        targets.push("not a url".to_owned());
        let touched = apply(
            &store,
            &purge(PurgeKind::Url, PurgeMode::Hard, targets),
            None,
        );
        assert_eq!(touched, purged.len());
        assert!(purged.iter().all(|key| store.get(key).is_none()));
        assert!(kept.iter().all(|key| store.get(key).is_some()));
    }

    #[test]
    fn a_url_purge_follows_each_targets_cache_rule_and_soft_marks_stale() {
        let store = MemoryStore::new(16 << 20);
        let ignore = CacheRule {
            path: "/static/*".to_owned(),
            ttl_secs: None,
            bypass: false,
            ignore_query: true,
            sort_query: false,
            key_headers: Vec::new(),
            cache_set_cookie: false,
        };
        let service = Service {
            id: "a".to_owned(),
            tenant: "t".to_owned(),
            hostnames: vec![HOST.to_owned()],
            origins: Vec::new(),
            cache_rules: vec![ignore.clone()],
            steering: Default::default(),
            tls: None,
            targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
            forward_targeted_cache_control: false,
            origin_ca_pem: None,
            defence: Default::default(),
        };
        let stat = key::cache_key(
            &key::namespace("a", Scheme::Http),
            HOST,
            "/static/x.css?anything",
            Some(&ignore),
            &HeaderMap::new(),
        );
        let page = k("a", Scheme::Http, HOST, "/page?x=1");
        let other = k("a", Scheme::Http, HOST, "/page?x=2");
        for key in [&stat, &page, &other] {
            store.put(key.clone(), entry());
        }
        let touched = apply(
            &store,
            &purge(
                PurgeKind::Url,
                PurgeMode::Soft,
                vec![
                    format!("http://{HOST}/static/x.css?v=9"),
                    format!("http://{HOST}/page?x=1"),
                ],
            ),
            Some(&service),
        );
        assert_eq!(touched, 2);
        assert_eq!(fresh(&store, &stat), Some(false));
        assert_eq!(fresh(&store, &page), Some(false));
        assert_eq!(fresh(&store, &other), Some(true));
    }

    #[test]
    fn a_prefix_purge_reads_each_host_once_and_matches_any_of_its_prefixes() {
        let store = MemoryStore::new(64 << 20);
        let mut expect_gone = Vec::new();
        let mut expect_kept = Vec::new();
        for dir in 0..50 {
            for i in 0..20 {
                let key = k("a", Scheme::Https, HOST, &format!("/d{dir}/f{i}"));
                store.put(key.clone(), entry());
                if dir % 2 == 0 {
                    &mut expect_gone
                } else {
                    &mut expect_kept
                }
                .push(key);
            }
        }
        let elsewhere = k("a", Scheme::Http, "h.example.cn", "/d0/f0");
        store.put(elsewhere.clone(), entry());
        expect_kept.push(elsewhere);
        let targets = (0..50)
            .step_by(2)
            .map(|d| format!("http://{HOST}/d{d}/"))
            .collect();
        let touched = apply(
            &store,
            &purge(PurgeKind::Prefix, PurgeMode::Hard, targets),
            None,
        );
        assert_eq!(touched, expect_gone.len());
        assert!(expect_gone.iter().all(|key| store.get(key).is_none()));
        assert!(expect_kept.iter().all(|key| store.get(key).is_some()));
    }
}
