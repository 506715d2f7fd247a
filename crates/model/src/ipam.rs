//! IP address management: which address of a pool to hand out next. Pure logic; the
//! control plane's store makes the choice atomic.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::pool::IpPool;

/// Whether `addr` may ever be handed out from `pool`: inside it, not reserved, and for IPv4
/// pools larger than a /31 not the network or broadcast address. The first address of an
/// IPv6 pool (the subnet-router anycast address) is skipped as well.
pub fn is_assignable(pool: &IpPool, addr: IpAddr) -> bool {
    if !pool.cidr.contains(&addr) || pool.reserved.contains(&addr) {
        return false;
    }
    match pool.cidr {
        ipnet::IpNet::V4(net) if net.prefix_len() <= 30 => {
            addr != IpAddr::V4(net.network()) && addr != IpAddr::V4(net.broadcast())
        }
        ipnet::IpNet::V4(_) => true,
        ipnet::IpNet::V6(net) => net.prefix_len() == 128 || addr != IpAddr::V6(net.network()),
    }
}

/// The lowest assignable address of `pool` not in `taken`, or `None` when it is exhausted.
pub fn first_free(pool: &IpPool, taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    pool.cidr
        .hosts()
        .chain(std::iter::once(pool.cidr.network()))
        .chain(std::iter::once(pool.cidr.broadcast()))
        .find(|a| is_assignable(pool, *a) && !taken.contains(a))
}

/// How many addresses `pool` can hand out in all.
pub fn capacity(pool: &IpPool) -> u64 {
    let host_bits = u32::from(pool.cidr.max_prefix_len() - pool.cidr.prefix_len());
    let total: u64 = 1u64 << host_bits.min(63);
    let edges = match pool.cidr {
        ipnet::IpNet::V4(n) if n.prefix_len() <= 30 => 2,
        ipnet::IpNet::V4(_) => 0,
        ipnet::IpNet::V6(n) if n.prefix_len() == 128 => 0,
        ipnet::IpNet::V6(_) => 1,
    };
    total - edges - pool.reserved.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, reserved: &[&str]) -> IpPool {
        IpPool {
            id: "p".into(),
            site: "s".into(),
            line: None,
            cidr: cidr.parse().expect("cidr"),
            reserved: reserved.iter().map(|r| r.parse().expect("addr")).collect(),
        }
    }

    #[test]
    fn hands_out_in_order_skipping_network_broadcast_and_reserved() {
        let p = pool("10.0.0.0/29", &["10.0.0.2"]);
        let mut taken = BTreeSet::new();
        let mut got = vec![];
        while let Some(a) = first_free(&p, &taken) {
            taken.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(capacity(&p), 5);
    }

    #[test]
    fn point_to_point_and_single_address_pools() {
        let p = pool("10.0.0.0/31", &[]);
        assert_eq!(capacity(&p), 2);
        let a = first_free(&p, &BTreeSet::new()).expect("free");
        assert_eq!(a.to_string(), "10.0.0.0");
        let p = pool("2001:db8::5/128", &[]);
        assert_eq!(capacity(&p), 1);
        assert!(first_free(&p, &BTreeSet::new()).is_some());
        let p = pool("2001:db8::/126", &[]);
        assert_eq!(
            first_free(&p, &BTreeSet::new())
                .map(|a| a.to_string())
                .as_deref(),
            Some("2001:db8::1")
        );
    }
}
