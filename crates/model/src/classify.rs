//! Client classification: maps a client IP address (IPv4 or IPv6) to the line (carrier
//! network) and region it belongs to, by longest-prefix match over line tables of
//! hundreds of thousands of prefixes.
//!
//! This module owns the lookup structure ([`PrefixTable`]) and the line/region
//! classifier built on it ([`Classifier`]). It does no I/O: the GSLB DNS server and the
//! control plane build a [`Classifier`] from the `LinePrefix` rows of a snapshot.
//!
//! # How lookups work
//!
//! Per address family, the (possibly nested or overlapping) prefixes are flattened once,
//! at build time, into a sorted list of disjoint address ranges that cover the whole
//! address space. Each range carries the value of the most specific prefix covering it,
//! or no value where no prefix covers it; adjacent ranges with equal values are merged.
//! A lookup is then "find the last range starting at or before the address": a direct
//! index on the top bits of the address (up to 16 bits, sized to the table) narrows the
//! search to the few ranges of one bucket, and a binary search finishes it. A lookup
//! therefore costs one index load plus a short binary search, independent of how deeply
//! the prefixes nest, and never allocates.
//!
//! # Rules
//!
//! - The longest (most specific) matching prefix wins.
//! - Prefixes are normalised with [`IpNet::trunc`]: host bits are ignored, so
//!   `10.1.2.3/8` is `10.0.0.0/8`.
//! - When the same prefix (after normalisation) is given more than once, the last one
//!   given wins.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up in the IPv4 table, as
//!   `a.b.c.d`; an IPv6 prefix inside `::ffff:0:0/96` therefore never matches anything.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::line::LinePrefix;

/// Most bits of an address used for the direct bucket index (2^16 + 1 entries).
const MAX_INDEX_BITS: u32 = 16;

/// An unsigned integer form of an address of one family (`u32` for IPv4, `u128` for
/// IPv6).
trait Addr: Copy + Ord {
    const ZERO: Self;
    const MAX: Self;
    /// `self + 1`; only called when `self < MAX`.
    fn succ(self) -> Self;
    /// The top `bits` bits of the address (`1 <= bits <= MAX_INDEX_BITS`).
    fn bucket(self, bits: u32) -> usize;
    /// The first address of bucket `b` (`b < 2^bits`).
    fn bucket_start(b: usize, bits: u32) -> Self;
}

impl Addr for u32 {
    const ZERO: Self = 0;
    const MAX: Self = u32::MAX;

    #[inline]
    fn succ(self) -> Self {
        self + 1
    }

    #[inline]
    fn bucket(self, bits: u32) -> usize {
        (self >> (<Self>::BITS - bits)) as usize
    }

    fn bucket_start(b: usize, bits: u32) -> Self {
        (b as u32) << (<Self>::BITS - bits)
    }
}

impl Addr for u128 {
    const ZERO: Self = 0;
    const MAX: Self = u128::MAX;

    #[inline]
    fn succ(self) -> Self {
        self + 1
    }

    #[inline]
    fn bucket(self, bits: u32) -> usize {
        (self >> (<Self>::BITS - bits)) as usize
    }

    fn bucket_start(b: usize, bits: u32) -> Self {
        (b as u128) << (<Self>::BITS - bits)
    }
}

/// One normalised source prefix of one family.
struct Entry<A, V> {
    /// First address of the prefix.
    start: A,
    /// Last address of the prefix (inclusive).
    end: A,
    prefix_len: u8,
    value: V,
}

/// The flattened ranges of one address family.
///
/// Invariants: `starts` is strictly increasing, `starts[0] == 0`, `values.len() ==
/// starts.len()`, and range `i` covers `starts[i] ..= starts[i + 1] - 1` (the last one
/// up to `A::MAX`). `index` has `2^index_bits + 1` entries; `index[b]` is the number of
/// ranges starting before bucket `b`, and the last entry is `starts.len()`.
#[derive(Clone)]
struct Family<A, V> {
    starts: Vec<A>,
    values: Vec<Option<V>>,
    index: Vec<u32>,
    index_bits: u32,
}

impl<A: Addr, V: Copy + PartialEq> Family<A, V> {
    fn build(mut entries: Vec<Entry<A, V>>) -> Self {
        // Parents before children; the stable sort keeps duplicates in input order.
        entries.sort_by_key(|e| (e.start, e.prefix_len));
        let mut unique: Vec<Entry<A, V>> = Vec::with_capacity(entries.len());
        for entry in entries {
            match unique.last_mut() {
                Some(last) if last.start == entry.start && last.prefix_len == entry.prefix_len => {
                    // The same prefix again: the last one given wins.
                    *last = entry;
                }
                _ => unique.push(entry),
            }
        }

        // Sweep in address order with a stack of the open (enclosing) prefixes. Two CIDR
        // prefixes are either disjoint or nested, so the stack is a chain of ancestors.
        let mut ranges: Vec<(A, Option<V>)> = vec![(A::ZERO, None)];
        let mut open: Vec<(A, V)> = Vec::new(); // (end, value)
        for entry in &unique {
            while let Some(&(end, _)) = open.last()
                && end < entry.start
            {
                open.pop();
                let outer = open.last().map(|&(_, v)| v);
                push_range(&mut ranges, end.succ(), outer);
            }
            push_range(&mut ranges, entry.start, Some(entry.value));
            open.push((entry.end, entry.value));
        }
        while let Some((end, _)) = open.pop() {
            if end != A::MAX {
                let outer = open.last().map(|&(_, v)| v);
                push_range(&mut ranges, end.succ(), outer);
            }
        }

        let (starts, values): (Vec<A>, Vec<Option<V>>) = ranges.into_iter().unzip();
        let index_bits = (usize::BITS - starts.len().leading_zeros()).clamp(1, MAX_INDEX_BITS);
        let buckets = 1usize << index_bits;
        let mut index = Vec::with_capacity(buckets + 1);
        for b in 0..buckets {
            let first = A::bucket_start(b, index_bits);
            // Fewer than 2^32 ranges: each comes from a source prefix held in memory.
            index.push(starts.partition_point(|&s| s < first) as u32);
        }
        index.push(starts.len() as u32);
        Family {
            starts,
            values,
            index,
            index_bits,
        }
    }
}

impl<A: Addr, V: Copy> Family<A, V> {
    #[inline]
    fn lookup(&self, addr: A) -> Option<V> {
        let b = addr.bucket(self.index_bits);
        let lo = self.index[b] as usize;
        let hi = self.index[b + 1] as usize;
        // Ranges starting inside the bucket at or before `addr`; when there is none, the
        // range containing `addr` is the last one starting before the bucket (lo - 1).
        // `lo + n >= 1` always: bucket 0 holds `starts[0] == 0 <= addr`, and any later
        // bucket has `lo >= 1`.
        let n = self.starts[lo..hi].partition_point(|&s| s <= addr);
        self.values[lo + n - 1]
    }
}

/// Appends range `start..` with `value` to `ranges`, whose starts are non-decreasing.
/// A range that `start` makes empty is dropped, and a range with the same value as the
/// previous one is merged into it.
fn push_range<A: Addr, V: Copy + PartialEq>(
    ranges: &mut Vec<(A, Option<V>)>,
    start: A,
    value: Option<V>,
) {
    if ranges.last().is_some_and(|&(s, _)| s == start) {
        ranges.pop();
    }
    if ranges.last().is_some_and(|&(_, v)| v == value) {
        return;
    }
    ranges.push((start, value));
}

/// A longest-prefix-match table from IPv4 and IPv6 prefixes to values of type `V`.
///
/// Built once from `(prefix, value)` entries (see the [module documentation](self) for
/// the rules: longest prefix wins, the last duplicate wins, IPv4-mapped IPv6 addresses
/// use the IPv4 table); immutable afterwards. Lookups take well under a microsecond for
/// tables of hundreds of thousands of prefixes and never allocate.
#[derive(Clone)]
pub struct PrefixTable<V: Copy> {
    v4: Family<u32, V>,
    v6: Family<u128, V>,
    len: usize,
}

impl<V: Copy + PartialEq> PrefixTable<V> {
    /// Builds a table from `(prefix, value)` entries, in any order. Prefixes are
    /// normalised with [`IpNet::trunc`]; for a prefix given more than once, the last
    /// entry wins.
    pub fn new<I>(entries: I) -> Self
    where
        I: IntoIterator<Item = (IpNet, V)>,
    {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut len = 0;
        for (net, value) in entries {
            len += 1;
            match net.trunc() {
                IpNet::V4(net) => v4.push(Entry {
                    start: u32::from(net.network()),
                    end: u32::from(net.broadcast()),
                    prefix_len: net.prefix_len(),
                    value,
                }),
                IpNet::V6(net) => v6.push(Entry {
                    start: u128::from(net.network()),
                    end: u128::from(net.broadcast()),
                    prefix_len: net.prefix_len(),
                    value,
                }),
            }
        }
        PrefixTable {
            v4: Family::build(v4),
            v6: Family::build(v6),
            len,
        }
    }
}

impl<V: Copy> PrefixTable<V> {
    /// The value of the longest prefix containing `ip`, or `None` when no prefix does.
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up as `a.b.c.d`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<V> {
        match ip {
            IpAddr::V4(ip) => self.lookup_v4(ip),
            IpAddr::V6(ip) => self.lookup_v6(ip),
        }
    }

    /// [`lookup`](Self::lookup) for an IPv4 address.
    #[inline]
    pub fn lookup_v4(&self, ip: Ipv4Addr) -> Option<V> {
        self.v4.lookup(u32::from(ip))
    }

    /// [`lookup`](Self::lookup) for an IPv6 address (IPv4-mapped ones use the IPv4
    /// table).
    #[inline]
    pub fn lookup_v6(&self, ip: Ipv6Addr) -> Option<V> {
        match ip.to_ipv4_mapped() {
            Some(v4) => self.lookup_v4(v4),
            None => self.v6.lookup(u128::from(ip)),
        }
    }

    /// The number of entries the table was built from (duplicates included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table was built from no entries at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of disjoint address ranges (IPv4 and IPv6 together, "no value" gaps
    /// included) the prefixes were flattened into; a measure of the table's size.
    pub fn range_count(&self) -> usize {
        self.v4.starts.len() + self.v6.starts.len()
    }
}

impl<V: Copy + PartialEq> Default for PrefixTable<V> {
    fn default() -> Self {
        Self::new(std::iter::empty())
    }
}

impl<V: Copy + PartialEq> FromIterator<(IpNet, V)> for PrefixTable<V> {
    fn from_iter<I: IntoIterator<Item = (IpNet, V)>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl<V: Copy> fmt::Debug for PrefixTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixTable")
            .field("len", &self.len)
            .field("v4_ranges", &self.v4.starts.len())
            .field("v6_ranges", &self.v6.starts.len())
            .finish()
    }
}

/// The line and region a client address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification<'a> {
    /// The line (client network, e.g. a carrier) name.
    pub line: &'a str,
    /// The region name, when the matching prefix names one.
    pub region: Option<&'a str>,
}

/// Region index meaning "the prefix names no region".
const NO_REGION: u32 = u32::MAX;

/// Classifies client addresses into (line, region) by longest-prefix match over a line
/// table. Line and region names are interned; the table maps to their indices.
#[derive(Clone)]
pub struct Classifier {
    lines: Vec<String>,
    regions: Vec<String>,
    table: PrefixTable<(u32, u32)>,
}

impl Classifier {
    /// Builds a classifier from line prefixes, in any order. For the same prefix given
    /// more than once, the last one wins (see the [module documentation](self)).
    pub fn from_prefixes(prefixes: &[LinePrefix]) -> Self {
        let mut lines = Interner::default();
        let mut regions = Interner::default();
        let table = PrefixTable::new(prefixes.iter().map(|p| {
            let line = lines.intern(&p.line);
            let region = p.region.as_deref().map_or(NO_REGION, |r| regions.intern(r));
            (p.cidr, (line, region))
        }));
        Classifier {
            lines: lines.names,
            regions: regions.names,
            table,
        }
    }

    /// The line and region of the longest prefix containing `ip`, or `None` when no
    /// prefix does. IPv4-mapped IPv6 addresses are classified as their IPv4 address.
    #[inline]
    pub fn classify(&self, ip: IpAddr) -> Option<Classification<'_>> {
        let (line, region) = self.table.lookup(ip)?;
        Some(Classification {
            line: self.lines.get(line as usize)?,
            region: if region == NO_REGION {
                None
            } else {
                self.regions.get(region as usize).map(String::as_str)
            },
        })
    }

    /// The number of source prefixes the classifier was built from.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the classifier was built from no prefixes (it classifies nothing).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The number of disjoint address ranges the prefixes were flattened into (see
    /// [`PrefixTable::range_count`]).
    pub fn range_count(&self) -> usize {
        self.table.range_count()
    }

    /// The distinct line names, in order of first appearance.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The distinct region names, in order of first appearance.
    pub fn regions(&self) -> &[String] {
        &self.regions
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Self::from_prefixes(&[])
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("prefixes", &self.table.len())
            .field("lines", &self.lines)
            .field("regions", &self.regions.len())
            .finish()
    }
}

/// Interns names as dense `u32` indices.
#[derive(Default)]
struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // Fewer than 2^32 - 1 names: each comes from a source prefix held in memory.
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid address")
    }

    fn table(entries: &[(&str, u32)]) -> PrefixTable<u32> {
        entries.iter().map(|&(n, v)| (net(n), v)).collect()
    }

    fn lp(cidr: &str, line: &str, region: Option<&str>) -> LinePrefix {
        LinePrefix {
            cidr: net(cidr),
            line: line.to_owned(),
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn nested_prefixes_most_specific_wins_at_every_boundary() {
        let t = table(&[("10.1.2.0/24", 24), ("10.0.0.0/8", 8), ("10.1.0.0/16", 16)]);
        let cases = [
            ("9.255.255.255", None),
            ("10.0.0.0", Some(8)),
            ("10.0.255.255", Some(8)),
            ("10.1.0.0", Some(16)),
            ("10.1.1.255", Some(16)),
            ("10.1.2.0", Some(24)),
            ("10.1.2.128", Some(24)),
            ("10.1.2.255", Some(24)),
            ("10.1.3.0", Some(16)),
            ("10.1.255.255", Some(16)),
            ("10.2.0.0", Some(8)),
            ("10.255.255.255", Some(8)),
            ("11.0.0.0", None),
            ("0.0.0.0", None),
            ("255.255.255.255", None),
        ];
        for (addr, want) in cases {
            assert_eq!(t.lookup(ip(addr)), want, "{addr}");
        }
        assert_eq!(t.len(), 3);
        assert!(!t.is_empty());
    }

    #[test]
    fn nested_prefixes_sharing_start_and_end() {
        // The /24 starts where the /8 starts, the /25 ends where the /8 ends.
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("10.0.0.0/24", 2),
            ("10.255.255.128/25", 3),
        ]);
        assert_eq!(t.lookup(ip("10.0.0.0")), Some(2));
        assert_eq!(t.lookup(ip("10.0.0.255")), Some(2));
        assert_eq!(t.lookup(ip("10.0.1.0")), Some(1));
        assert_eq!(t.lookup(ip("10.255.255.127")), Some(1));
        assert_eq!(t.lookup(ip("10.255.255.128")), Some(3));
        assert_eq!(t.lookup(ip("10.255.255.255")), Some(3));
        assert_eq!(t.lookup(ip("11.0.0.0")), None);
    }

    #[test]
    fn no_match_and_empty_table() {
        let t = table(&[("192.0.2.0/24", 1), ("2001:db8::/32", 2)]);
        assert_eq!(t.lookup(ip("198.51.100.1")), None);
        assert_eq!(t.lookup(ip("2001:db9::1")), None);
        assert_eq!(t.lookup(ip("::")), None);

        let empty: PrefixTable<u32> = PrefixTable::default();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        for addr in ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "2001:db8::1"] {
            assert_eq!(empty.lookup(ip(addr)), None, "{addr}");
        }
        assert_eq!(
            empty.lookup(IpAddr::V6(Ipv6Addr::from(u128::MAX))),
            None,
            "u128::MAX"
        );
    }

    #[test]
    fn default_routes() {
        let t = table(&[
            ("0.0.0.0/0", 1),
            ("1.0.0.0/8", 2),
            ("::/0", 3),
            ("2001:db8::/32", 4),
        ]);
        assert_eq!(t.lookup(ip("0.0.0.0")), Some(1));
        assert_eq!(t.lookup(ip("0.255.255.255")), Some(1));
        assert_eq!(t.lookup(ip("1.0.0.0")), Some(2));
        assert_eq!(t.lookup(ip("1.255.255.255")), Some(2));
        assert_eq!(t.lookup(ip("2.0.0.0")), Some(1));
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(1));
        assert_eq!(t.lookup(ip("::")), Some(3));
        assert_eq!(t.lookup(ip("2001:db8::")), Some(4));
        assert_eq!(
            t.lookup(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(4)
        );
        assert_eq!(t.lookup(ip("2001:db9::")), Some(3));
        assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::from(u128::MAX))), Some(3));
        // The v4 default route does not cover v6 and vice versa.
        let v4_only = table(&[("0.0.0.0/0", 1)]);
        assert_eq!(v4_only.lookup(ip("2001:db8::1")), None);
        let v6_only = table(&[("::/0", 3)]);
        assert_eq!(v6_only.lookup(ip("1.2.3.4")), None);
    }

    #[test]
    fn last_addresses_of_each_family() {
        let t = table(&[
            ("255.255.255.255/32", 1),
            ("255.255.255.0/24", 2),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 3),
            ("ff00::/8", 4),
        ]);
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(1));
        assert_eq!(t.lookup(ip("255.255.255.254")), Some(2));
        assert_eq!(t.lookup(ip("255.255.254.255")), None);
        assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::from(u128::MAX))), Some(3));
        assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::from(u128::MAX - 1))), Some(4));
        assert_eq!(t.lookup(ip("ff00::")), Some(4));
        assert_eq!(
            t.lookup(ip("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            None
        );

        let single = table(&[("255.255.255.255/32", 7)]);
        assert_eq!(single.lookup(ip("255.255.255.255")), Some(7));
        assert_eq!(single.lookup(ip("255.255.255.254")), None);
        assert_eq!(single.lookup(ip("0.0.0.0")), None);
        let first = table(&[("0.0.0.0/32", 7), ("::/128", 8)]);
        assert_eq!(first.lookup(ip("0.0.0.0")), Some(7));
        assert_eq!(first.lookup(ip("0.0.0.1")), None);
        assert_eq!(first.lookup(ip("::")), Some(8));
        assert_eq!(first.lookup(ip("::1")), None);
    }

    #[test]
    fn adjacent_ranges() {
        let t = table(&[
            ("192.0.2.0/25", 1),
            ("192.0.2.128/25", 2),
            ("192.0.3.0/24", 2),
            ("192.0.4.0/24", 1),
        ]);
        assert_eq!(t.lookup(ip("192.0.1.255")), None);
        assert_eq!(t.lookup(ip("192.0.2.0")), Some(1));
        assert_eq!(t.lookup(ip("192.0.2.127")), Some(1));
        assert_eq!(t.lookup(ip("192.0.2.128")), Some(2));
        assert_eq!(t.lookup(ip("192.0.3.255")), Some(2));
        assert_eq!(t.lookup(ip("192.0.4.0")), Some(1));
        assert_eq!(t.lookup(ip("192.0.4.255")), Some(1));
        assert_eq!(t.lookup(ip("192.0.5.0")), None);
        // The two adjacent ranges with value 2 are merged: gap, 1, 2, 1, gap (+ v6 gap).
        assert_eq!(t.range_count(), 5 + 1);
    }

    #[test]
    fn ipv6_nested() {
        let t = table(&[
            ("2001:db8::/32", 1),
            ("2001:db8:1::/48", 2),
            ("2001:db8:1:2::/64", 3),
            ("2001:db8:1:2::1/128", 4),
        ]);
        assert_eq!(t.lookup(ip("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")), None);
        assert_eq!(t.lookup(ip("2001:db8::")), Some(1));
        assert_eq!(t.lookup(ip("2001:db8:0:ffff:ffff:ffff:ffff:ffff")), Some(1));
        assert_eq!(t.lookup(ip("2001:db8:1::")), Some(2));
        assert_eq!(t.lookup(ip("2001:db8:1:1:ffff:ffff:ffff:ffff")), Some(2));
        assert_eq!(t.lookup(ip("2001:db8:1:2::")), Some(3));
        assert_eq!(t.lookup(ip("2001:db8:1:2::1")), Some(4));
        assert_eq!(t.lookup(ip("2001:db8:1:2::2")), Some(3));
        assert_eq!(t.lookup(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), Some(3));
        assert_eq!(t.lookup(ip("2001:db8:1:3::")), Some(2));
        assert_eq!(t.lookup(ip("2001:db8:2::")), Some(1));
        assert_eq!(t.lookup(ip("2001:db9::")), None);
        // v6 prefixes never answer v4 lookups.
        assert_eq!(t.lookup(ip("32.1.13.184")), None);
    }

    #[test]
    fn ipv4_mapped_ipv6_uses_the_v4_table() {
        let t = table(&[("192.0.2.0/24", 1), ("::ffff:0:0/96", 9), ("::/0", 5)]);
        assert_eq!(t.lookup(ip("::ffff:192.0.2.7")), Some(1));
        assert_eq!(t.lookup(ip("::ffff:198.51.100.1")), None);
        // IPv4-compatible (deprecated, ::a.b.c.d) addresses are plain v6.
        assert_eq!(t.lookup(ip("::192.0.2.7")), Some(5));
        assert_eq!(
            t.lookup_v6("::ffff:192.0.2.255".parse().expect("v6")),
            Some(1)
        );
        assert_eq!(t.lookup_v4("192.0.2.255".parse().expect("v4")), Some(1));
    }

    #[test]
    fn prefixes_are_truncated_and_last_duplicate_wins() {
        let t = table(&[
            ("10.1.2.3/8", 1),
            ("10.0.0.0/8", 2),
            ("10.9.9.9/8", 3),
            ("2001:db8::1/32", 4),
            ("2001:db8::/32", 5),
        ]);
        assert_eq!(t.lookup(ip("10.0.0.1")), Some(3));
        assert_eq!(t.lookup(ip("10.255.0.1")), Some(3));
        assert_eq!(t.lookup(ip("2001:db8::5")), Some(5));
        assert_eq!(t.len(), 5);
        // A duplicate inside a nest keeps the nesting.
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.0.0/16", 3),
            ("10.1.1.0/24", 4),
        ]);
        assert_eq!(t.lookup(ip("10.1.0.0")), Some(3));
        assert_eq!(t.lookup(ip("10.1.1.1")), Some(4));
        assert_eq!(t.lookup(ip("10.1.2.0")), Some(3));
        assert_eq!(t.lookup(ip("10.2.0.0")), Some(1));
    }

    #[test]
    fn classifier_interns_lines_and_regions() {
        let c = Classifier::from_prefixes(&[
            lp("1.0.0.0/8", "telecom", None),
            lp("1.2.0.0/16", "telecom", Some("cn-gd")),
            lp("1.2.3.0/24", "unicom", Some("cn-bj")),
            lp("2.0.0.0/8", "unicom", Some("cn-gd")),
            lp("240e::/20", "telecom", Some("cn")),
        ]);
        assert_eq!(c.len(), 5);
        assert!(!c.is_empty());
        assert_eq!(c.lines(), ["telecom", "unicom"]);
        assert_eq!(c.regions(), ["cn-gd", "cn-bj", "cn"]);
        let got = |a: &str| c.classify(ip(a));
        assert_eq!(
            got("1.1.1.1"),
            Some(Classification {
                line: "telecom",
                region: None
            })
        );
        assert_eq!(
            got("1.2.0.1"),
            Some(Classification {
                line: "telecom",
                region: Some("cn-gd")
            })
        );
        assert_eq!(
            got("1.2.3.4"),
            Some(Classification {
                line: "unicom",
                region: Some("cn-bj")
            })
        );
        assert_eq!(
            got("::ffff:2.3.4.5"),
            Some(Classification {
                line: "unicom",
                region: Some("cn-gd")
            })
        );
        assert_eq!(
            got("240e:1::1"),
            Some(Classification {
                line: "telecom",
                region: Some("cn")
            })
        );
        assert_eq!(got("3.0.0.0"), None);
        assert_eq!(got("2001:db8::1"), None);

        let empty = Classifier::default();
        assert!(empty.is_empty());
        assert_eq!(empty.classify(ip("1.1.1.1")), None);
    }

    /// The reference: scan every prefix, keep the longest match (the last one among
    /// equal prefixes).
    fn naive(prefixes: &[(IpNet, u32)], ip: IpAddr) -> Option<u32> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let mut best: Option<(u8, u32)> = None;
        for &(net, value) in prefixes {
            if net.contains(&ip) && best.is_none_or(|(len, _)| net.prefix_len() >= len) {
                best = Some((net.prefix_len(), value));
            }
        }
        best.map(|(_, v)| v)
    }

    /// Addresses to probe: random ones, and the boundaries of random source prefixes
    /// (first, last, one before, one after).
    fn probes_v4(rng: &mut StdRng, prefixes: &[(IpNet, u32)], count: usize) -> Vec<IpAddr> {
        let v4: Vec<(u32, u32)> = prefixes
            .iter()
            .filter_map(|(n, _)| match n {
                IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(_) => None,
            })
            .collect();
        (0..count)
            .map(|i| {
                let a = if v4.is_empty() || i % 2 == 0 {
                    rng.random::<u32>()
                } else {
                    let (s, e) = v4[rng.random_range(0..v4.len())];
                    match rng.random_range(0..5) {
                        0 => s,
                        1 => e,
                        2 => s.wrapping_sub(1),
                        3 => e.wrapping_add(1),
                        _ => s | (rng.random::<u32>() & (e - s)),
                    }
                };
                let a = Ipv4Addr::from(a);
                if i % 7 == 0 {
                    IpAddr::V6(a.to_ipv6_mapped())
                } else {
                    IpAddr::V4(a)
                }
            })
            .collect()
    }

    fn probes_v6(rng: &mut StdRng, prefixes: &[(IpNet, u32)], count: usize) -> Vec<IpAddr> {
        let v6: Vec<(u128, u128)> = prefixes
            .iter()
            .filter_map(|(n, _)| match n {
                IpNet::V6(n) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
                IpNet::V4(_) => None,
            })
            .collect();
        (0..count)
            .map(|i| {
                let a = if v6.is_empty() || i % 4 == 0 {
                    rng.random::<u128>()
                } else {
                    let (s, e) = v6[rng.random_range(0..v6.len())];
                    match rng.random_range(0..5) {
                        0 => s,
                        1 => e,
                        2 => s.wrapping_sub(1),
                        3 => e.wrapping_add(1),
                        _ => s | (rng.random::<u128>() & (e - s)),
                    }
                };
                IpAddr::V6(Ipv6Addr::from(a))
            })
            .collect()
    }

    fn random_v4_prefixes(rng: &mut StdRng, count: usize) -> Vec<(IpNet, u32)> {
        // A few "hot" /8s so that prefixes nest and overlap a lot, plus some anywhere.
        let hot: Vec<u32> = (0..6).map(|_| rng.random::<u32>() & 0xff00_0000).collect();
        (0..count)
            .map(|_| {
                let len = match rng.random_range(0..10) {
                    0 => rng.random_range(0..9u8),          // /0../8
                    1..=3 => 8 + rng.random_range(0..9u8),  // /8../16
                    4..=7 => 16 + rng.random_range(0..9u8), // /16../24
                    _ => 24 + rng.random_range(0..9u8),     // /24../32
                };
                let mut a = rng.random::<u32>();
                if rng.random_range(0..4) != 0 {
                    a = hot[rng.random_range(0..hot.len())] | (a & 0x00ff_ffff);
                }
                let n = ipnet::Ipv4Net::new(Ipv4Addr::from(a), len).expect("len <= 32");
                (IpNet::V4(n), rng.random_range(0..12u32))
            })
            .collect()
    }

    fn random_v6_prefixes(rng: &mut StdRng, count: usize) -> Vec<(IpNet, u32)> {
        let hot: Vec<u128> = (0..6)
            .map(|_| rng.random::<u128>() & !(u128::MAX >> 24))
            .collect();
        (0..count)
            .map(|_| {
                let len = match rng.random_range(0..10) {
                    0 => rng.random_range(0..25u8),
                    1..=6 => 24 + rng.random_range(0..41u8),
                    _ => 64 + rng.random_range(0..65u8),
                };
                let mut a = rng.random::<u128>();
                if rng.random_range(0..4) != 0 {
                    a = hot[rng.random_range(0..hot.len())] | (a & (u128::MAX >> 24));
                }
                let n = ipnet::Ipv6Net::new(Ipv6Addr::from(a), len).expect("len <= 128");
                (IpNet::V6(n), rng.random_range(0..12u32))
            })
            .collect()
    }

    #[test]
    fn randomized_against_naive_scan() {
        for seed in [0x9e37_79b9_7f4a_7c15_u64, 1, 0xdead_beef] {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut prefixes = random_v4_prefixes(&mut rng, 1_000);
            prefixes.extend(random_v6_prefixes(&mut rng, 1_000));
            // Some exact duplicates with other values, to exercise "last one wins".
            for _ in 0..50 {
                let (n, _) = prefixes[rng.random_range(0..prefixes.len())];
                prefixes.push((n, 100 + rng.random_range(0..3u32)));
            }
            let t: PrefixTable<u32> = prefixes.iter().copied().collect();
            assert_eq!(t.len(), prefixes.len());
            let mut addrs = probes_v4(&mut rng, &prefixes, 10_000);
            addrs.extend(probes_v6(&mut rng, &prefixes, 10_000));
            for a in addrs {
                assert_eq!(
                    t.lookup(a),
                    naive(&prefixes, a),
                    "seed {seed:#x}, address {a}"
                );
            }
        }
    }

    #[test]
    fn randomized_small_tables() {
        // Small tables use a small bucket index; check many shapes of them.
        let mut rng = StdRng::seed_from_u64(42);
        for round in 0..300 {
            let count = 1 + round % 20;
            let mut prefixes = random_v4_prefixes(&mut rng, count);
            prefixes.extend(random_v6_prefixes(&mut rng, count));
            let t: PrefixTable<u32> = prefixes.iter().copied().collect();
            let mut addrs = probes_v4(&mut rng, &prefixes, 200);
            addrs.extend(probes_v6(&mut rng, &prefixes, 200));
            for a in addrs {
                assert_eq!(
                    t.lookup(a),
                    naive(&prefixes, a),
                    "round {round}, address {a}"
                );
            }
        }
    }
}
