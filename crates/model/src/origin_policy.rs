//! Where tenants' origins may point: never at the platform itself (its nodes, its control
//! plane) and never at loopback, private, link-local, multicast or otherwise non-public
//! addresses, unless the operator allowed that network or endpoint.
//!
//! The same check runs at the API (for literal addresses) and on the edge at connect time
//! (after name resolution), so a name that resolves to a platform address is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The operator's rules for where tenants' origins may point.
///
/// An origin address is refused when it is one of `platform_addresses` or
/// `platform_endpoints` (always), or when it is not globally routable (loopback, private,
/// link-local, multicast, unspecified, documentation, ...) unless one of `allowed` covers
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct OriginPolicy {
    /// What the operator allows besides public addresses: networks (`10.20.0.0/16`,
    /// `127.0.0.1/32`) or single endpoints (`127.0.0.1:7900`).
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Addresses of the platform's nodes: no port of theirs is an origin.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub platform_addresses: Vec<IpAddr>,
    /// Endpoints of the platform (the control plane's API, ...): never an origin.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub platform_endpoints: Vec<SocketAddr>,
}

/// One entry of [`OriginPolicy::allowed`], parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    Network(IpNet),
    Endpoint(SocketAddr),
}

impl std::str::FromStr for Allowance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Allowance::Network(net.trunc()));
        }
        if let Ok(ep) = s.parse::<SocketAddr>() {
            return Ok(Allowance::Endpoint(ep));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Allowance::Network(IpNet::from(ip)));
        }
        Err(format!(
            "`{s}` is neither a network (`10.0.0.0/8`), an address nor an endpoint (`127.0.0.1:7900`)"
        ))
    }
}

impl Allowance {
    fn covers(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        match self {
            Allowance::Network(net) => net.contains(&ip),
            Allowance::Endpoint(ep) => canonical(ep.ip()) == ip && ep.port() == addr.port(),
        }
    }
}

/// Why an origin address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefused {
    #[error("{0} is an address of the platform itself; origins must be outside it")]
    Platform(SocketAddr),
    #[error(
        "{0} is {1}, not a public address; origins must be on the internet unless the operator allows that network (`--allow-origin`)"
    )]
    NotPublic(SocketAddr, &'static str),
}

impl OriginPolicy {
    /// Parses `allowed`; errors name the bad entry.
    pub fn allowances(&self) -> Result<Vec<Allowance>, String> {
        self.allowed.iter().map(|a| a.parse()).collect()
    }

    /// A checker with `allowed` parsed once (bad entries are skipped: they were refused
    /// when the operator set them).
    pub fn compile(&self) -> CompiledOriginPolicy {
        CompiledOriginPolicy {
            allowed: self.allowed.iter().filter_map(|a| a.parse().ok()).collect(),
            platform_addresses: self
                .platform_addresses
                .iter()
                .map(|ip| canonical(*ip))
                .collect(),
            platform_endpoints: self
                .platform_endpoints
                .iter()
                .map(|ep| SocketAddr::new(canonical(ep.ip()), ep.port()))
                .collect(),
        }
    }
}

/// [`OriginPolicy`] ready to check addresses.
#[derive(Debug, Clone, Default)]
pub struct CompiledOriginPolicy {
    allowed: Vec<Allowance>,
    platform_addresses: Vec<IpAddr>,
    platform_endpoints: Vec<SocketAddr>,
}

impl CompiledOriginPolicy {
    /// Whether an origin may be connected to at `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), OriginRefused> {
        let ip = canonical(addr.ip());
        let canon = SocketAddr::new(ip, addr.port());
        // An endpoint on the unspecified address (a control plane listening on
        // `0.0.0.0:7700`) is that port on every address.
        let endpoint = |ep: &SocketAddr| {
            *ep == canon || (ep.ip().is_unspecified() && ep.port() == addr.port())
        };
        if self.platform_addresses.contains(&ip) || self.platform_endpoints.iter().any(endpoint) {
            return Err(OriginRefused::Platform(addr));
        }
        if let Some(kind) = non_public(ip)
            && !self.allowed.iter().any(|a| a.covers(canon))
        {
            return Err(OriginRefused::NotPublic(addr, kind));
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, if it is one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_unspecified() || o[0] == 0 {
        "unspecified (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "shared address space (100.64.0.0/10)"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || o[0] >= 240 {
        "reserved (240.0.0.0/4)"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "IETF protocol assignments (192.0.0.0/24)"
    } else if ip.is_documentation() {
        "a documentation address"
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        "benchmarking (198.18.0.0/15)"
    } else {
        return None;
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_multicast() {
        "multicast"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "unique local (fc00::/7)"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "a documentation address"
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 {
        "local-use NAT64 (64:ff9b:1::/48)"
    } else if (s[0] == 0x0064 && s[1] == 0xff9b) || s[0..6] == [0, 0, 0, 0, 0xffff, 0] {
        // NAT64 (64:ff9b::/96) and IPv4-translated (::ffff:0:0/96) embed an IPv4
        // address: judge that one.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return non_public_v4(v4);
    } else if s[0] == 0x2001 && s[1] == 0 {
        "Teredo (2001::/32)"
    } else if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        "discard-only (100::/64)"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        "IETF protocol assignments (2001::/23)"
    } else if s[0] == 0x2002 {
        // 6to4 embeds an IPv4 address too.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return non_public_v4(v4);
    } else if s[0..6] == [0, 0, 0, 0, 0, 0] {
        "IPv4-compatible (deprecated)"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> CompiledOriginPolicy {
        OriginPolicy {
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            platform_addresses: vec!["203.0.114.5".parse().expect("ip")],
            platform_endpoints: vec!["127.0.0.1:7700".parse().expect("ep")],
        }
        .compile()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn non_public_refused_by_default() {
        let p = policy(&[]);
        for bad in [
            "127.0.0.1:80",
            "127.0.1.1:9090",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "100.64.0.1:80",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[64:ff9b::7f00:1]:80",
            "[2002:7f00:1::]:80",
            "[::]:80",
            "[::ffff:0:7f00:1]:80",
            "[64:ff9b:1::1]:80",
            "[2001:0:4136:e378::1]:80",
            "[100::1]:80",
        ] {
            assert!(p.check(sa(bad)).is_err(), "{bad}");
        }
        for good in ["93.184.216.34:443", "[2606:4700::1111]:443", "8.8.8.8:80"] {
            assert!(p.check(sa(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn platform_refused_even_when_allowed() {
        let p = policy(&["0.0.0.0/0", "127.0.0.0/8"]);
        assert!(matches!(
            p.check(sa("203.0.114.5:80")),
            Err(OriginRefused::Platform(_))
        ));
        assert!(matches!(
            p.check(sa("[::ffff:127.0.0.1]:7700")),
            Err(OriginRefused::Platform(_))
        ));
        assert!(p.check(sa("127.0.0.1:7900")).is_ok());
        // A control plane on 0.0.0.0:7800 is that port on every address.
        let p = OriginPolicy {
            allowed: vec!["0.0.0.0/0".into()],
            platform_addresses: vec![],
            platform_endpoints: vec![sa("0.0.0.0:7800")],
        }
        .compile();
        assert!(p.check(sa("10.1.2.3:7800")).is_err());
        assert!(p.check(sa("10.1.2.3:7801")).is_ok());
    }

    #[test]
    fn endpoint_allowance_is_exact() {
        let p = policy(&["127.0.0.1:7900"]);
        assert!(p.check(sa("127.0.0.1:7900")).is_ok());
        assert!(p.check(sa("127.0.0.1:7901")).is_err());
        assert!(p.check(sa("127.0.0.2:7900")).is_err());
    }

    #[test]
    fn allowance_parsing() {
        assert!("10.0.0.0/8".parse::<Allowance>().is_ok());
        assert!("127.0.0.1".parse::<Allowance>().is_ok());
        assert!("[::1]:80".parse::<Allowance>().is_ok());
        assert!("nonsense".parse::<Allowance>().is_err());
    }
}
