//! Purge indexes: which stored keys belong to a service's host, and which carry a tag.
//!
//! Each storage tier keeps one [`PurgeIndex`] next to its own map of entries and updates
//! it wherever an entry comes or goes (put, remove, eviction, a disk-index rebuild at
//! start), so a purge by URL, prefix or tag looks at the keys of one bucket instead of
//! scanning every key of the tier. A key is filed once under its host bucket
//! ([`key::key_host_bucket`]: service and host, both schemes) and once per tag of its
//! variants ([`key::key_tag_bucket`]: service and tag); the index holds shared pointers to
//! the keys, so it costs a few words per key and tag. Strings that are not cache keys (no
//! namespace) are not indexed: only a flush removes them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::key;
use super::store::Entry;

/// Keys by host bucket and by tag bucket. Not synchronised: the owning tier locks it.
#[derive(Debug, Default)]
pub struct PurgeIndex {
    hosts: HashMap<String, HashSet<Arc<String>>>,
    tags: HashMap<String, HashSet<Arc<String>>>,
}

impl PurgeIndex {
    /// Files `key` under its host and under each of `tags`.
    pub fn insert(&mut self, key: &Arc<String>, tags: &[String]) {
        let Some(host) = key::key_host_bucket(key) else {
            return;
        };
        self.hosts.entry(host).or_default().insert(key.clone());
        for tag in tags {
            if let Some(bucket) = key::key_tag_bucket(key, tag) {
                self.tags.entry(bucket).or_default().insert(key.clone());
            }
        }
    }

    /// Removes `key`, filed with `tags` (those it was inserted with).
    pub fn remove(&mut self, key: &str, tags: &[String]) {
        let Some(host) = key::key_host_bucket(key) else {
            return;
        };
        remove_from(&mut self.hosts, host, key);
        for tag in tags {
            if let Some(bucket) = key::key_tag_bucket(key, tag) {
                remove_from(&mut self.tags, bucket, key);
            }
        }
    }

    /// The keys in a host bucket ([`key::host_bucket`]: a service's keys for one host,
    /// both schemes, every path).
    pub fn host_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        collect(&self.hosts, bucket)
    }

    /// The keys in a tag bucket ([`key::tag_bucket`]: a service's keys with one tag).
    pub fn tag_keys(&self, bucket: &str) -> Vec<Arc<String>> {
        collect(&self.tags, bucket)
    }

    /// Keys indexed (by host).
    pub fn len(&self) -> usize {
        self.hosts.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

fn remove_from(map: &mut HashMap<String, HashSet<Arc<String>>>, bucket: String, key: &str) {
    if let Some(set) = map.get_mut(&bucket) {
        set.remove(&key.to_owned());
        if set.is_empty() {
            map.remove(&bucket);
        }
    }
}

fn collect(map: &HashMap<String, HashSet<Arc<String>>>, bucket: &str) -> Vec<Arc<String>> {
    map.get(bucket)
        .map(|set| set.iter().cloned().collect())
        .unwrap_or_default()
}

/// The tags of an entry's variants, sorted and deduplicated.
pub fn entry_tags(entry: &Entry) -> Box<[String]> {
    let mut tags: Vec<String> = entry
        .variants
        .iter()
        .flat_map(|v| v.tags.iter().cloned())
        .collect();
    tags.sort();
    tags.dedup();
    tags.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{Scheme, namespace};

    fn k(service: &str, scheme: Scheme, host: &str, path: &str) -> Arc<String> {
        Arc::new(format!("{}{host}{path}", namespace(service, scheme)))
    }

    #[test]
    fn keys_are_found_by_service_host_and_tag_and_leave_cleanly() {
        let mut index = PurgeIndex::default();
        let a = k("a", Scheme::Http, "x.com", "/1");
        let a_tls = k("a", Scheme::Https, "x.com", "/1");
        let b = k("b", Scheme::Http, "x.com", "/1");
        index.insert(&a, &["t".into()]);
        index.insert(&a_tls, &[]);
        index.insert(&b, &["t".into()]);
        index.insert(&Arc::new("not a key".into()), &["t".into()]);
        let mut host = index.host_keys(&key::host_bucket("a", "x.com"));
        host.sort();
        assert_eq!(host, vec![a.clone(), a_tls.clone()]);
        assert_eq!(index.tag_keys(&key::tag_bucket("a", "t")), vec![a.clone()]);
        assert_eq!(index.tag_keys(&key::tag_bucket("b", "t")), vec![b.clone()]);
        assert!(index.host_keys(&key::host_bucket("a", "y.com")).is_empty());
        assert_eq!(index.len(), 3);

        index.remove(&a, &["t".into()]);
        index.remove(&a_tls, &[]);
        index.remove(&b, &["t".into()]);
        assert!(index.is_empty());
        assert!(index.tags.is_empty(), "empty buckets are dropped");
    }
}
