//! The ECS scope of an answer (RFC 7871 §7.2.1): the shortest prefix around the client's
//! address inside which every address is classified the same way, so a resolver may
//! reuse the answer for that whole prefix and for nothing larger.
//!
//! Classification can only change at a prefix boundary (the first address of a line
//! prefix, or the address just past its end). For an address `a` the widest block
//! `a/L` that straddles no boundary is found from the two boundaries nearest to `a`:
//! the block must not hold both `b - 1` and `b` for any boundary `b`, and for sorted
//! boundaries the tightest constraint comes from the last one at or below `a` and the
//! first one above it. Two binary searches per lookup, no allocation.

use std::net::IpAddr;

use ipnet::IpNet;

/// Sorted, de-duplicated classification boundaries per address family, each kept as a
/// `u128` (IPv4 addresses in the low 32 bits).
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    v4: Vec<u128>,
    v6: Vec<u128>,
}

impl ScopeTable {
    /// Builds the table from the line prefixes' networks (host bits are ignored).
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in prefixes {
            match net.trunc() {
                IpNet::V4(n) => {
                    let start = u128::from(u32::from(n.network()));
                    let end = u128::from(u32::from(n.broadcast()));
                    v4.push(start);
                    if end < u128::from(u32::MAX) {
                        v4.push(end + 1);
                    }
                }
                IpNet::V6(n) => {
                    let start = u128::from(n.network());
                    let end = u128::from(n.broadcast());
                    v6.push(start);
                    if end < u128::MAX {
                        v6.push(end + 1);
                    }
                }
            }
        }
        for list in [&mut v4, &mut v6] {
            list.retain(|&b| b != 0);
            list.sort_unstable();
            list.dedup();
        }
        ScopeTable { v4, v6 }
    }

    /// The shortest prefix length `L` such that every address of `addr/L` is classified
    /// like `addr`. IPv4-mapped IPv6 addresses are judged in the IPv4 table (as the
    /// classifier does) and answered in IPv6 terms (`96 + L`).
    pub fn scope(&self, addr: IpAddr) -> u8 {
        match addr {
            IpAddr::V4(a) => block_len(&self.v4, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => 96 + block_len(&self.v4, u128::from(u32::from(v4)), 32),
                None => block_len(&self.v6, u128::from(a), 128),
            },
        }
    }
}

/// Common leading bits of `x` and `y` within a `bits`-wide address space.
fn common_prefix(x: u128, y: u128, bits: u32) -> u32 {
    (x ^ y).leading_zeros().saturating_sub(128 - bits).min(bits)
}

fn block_len(boundaries: &[u128], a: u128, bits: u32) -> u8 {
    let i = boundaries.partition_point(|&b| b <= a);
    let mut len = 0;
    // The last boundary at or below `a` (never 0: zero is not kept).
    if let Some(&b) = i.checked_sub(1).and_then(|j| boundaries.get(j)) {
        len = len.max(common_prefix(a, b - 1, bits) + 1);
    }
    // The first boundary above `a`.
    if let Some(&b) = boundaries.get(i) {
        len = len.max(common_prefix(a, b, bits) + 1);
    }
    // At most `bits` (<= 128).
    u8::try_from(len.min(bits)).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(nets: &[&str]) -> ScopeTable {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        ScopeTable::new(&nets)
    }

    #[test]
    fn a_lone_prefix_is_its_own_scope() {
        let t = table(&["198.51.100.0/26"]);
        assert_eq!(t.scope("198.51.100.1".parse().unwrap()), 26);
        assert_eq!(t.scope("198.51.100.63".parse().unwrap()), 26);
    }

    #[test]
    fn nested_prefixes_narrow_the_scope() {
        let t = table(&["10.0.0.0/8", "10.1.0.0/16"]);
        assert_eq!(t.scope("10.1.2.3".parse().unwrap()), 16);
        // 10.0.0.1 is in the /8 but outside the /16: 10.0.0.0/16 is uniform.
        assert_eq!(t.scope("10.0.0.1".parse().unwrap()), 16);
        // 10.128.0.1: 10.128.0.0/9 is uniform (the /16 lies in the lower half).
        assert_eq!(t.scope("10.128.0.1".parse().unwrap()), 9);
    }

    #[test]
    fn unclassified_space_gets_the_widest_uniform_block() {
        let t = table(&["198.51.100.0/24"]);
        // 0.0.0.0/1 holds no boundary besides ... 198 is in the upper half.
        assert_eq!(t.scope("1.2.3.4".parse().unwrap()), 1);
        assert_eq!(ScopeTable::default().scope("1.2.3.4".parse().unwrap()), 0);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let t = table(&["2001:db8:1::/64", "198.51.100.0/24"]);
        assert_eq!(t.scope("2001:db8:1::1".parse().unwrap()), 64);
        assert_eq!(t.scope("::ffff:198.51.100.7".parse().unwrap()), 96 + 24);
    }

    #[test]
    fn a_block_of_the_computed_length_is_uniform() {
        // Brute force over a small table: every address of a/L classifies alike.
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.128/25",
            "11.0.0.0/8",
        ];
        let parsed: Vec<ipnet::Ipv4Net> = nets.iter().map(|n| n.parse().unwrap()).collect();
        let t = table(&nets);
        let class = |a: u32| {
            parsed
                .iter()
                .filter(|n| n.contains(&std::net::Ipv4Addr::from(a)))
                .map(|n| n.prefix_len())
                .max()
        };
        for a in (0x0A01_0000u32..0x0A01_0400).step_by(7) {
            let l = u32::from(t.scope(IpAddr::from(std::net::Ipv4Addr::from(a))));
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            let lo = a & mask;
            let hi = lo | !mask;
            let c = class(a);
            for x in [lo, hi, lo + (hi - lo) / 2] {
                assert_eq!(class(x), c, "a={a:x} l={l}");
            }
        }
    }
}
