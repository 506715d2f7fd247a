//! The fixed zone the fuzz targets answer from: a small snapshot with two sites on two
//! lines, a fallback site, a classified prefix per line, and one service.

use lingjing_dns::Gslb;
use lingjing_model::{DnsSnapshot, LinePrefix, Node, NodeInfo, NodePorts, NodeRole, Service, Site};

pub fn gslb() -> Gslb {
    let site = |id: &str, line: &str| Site {
        id: id.into(),
        name: id.into(),
        region: "r".into(),
        lines: vec![line.into()],
        bandwidth_mbps: 0,
        parent: None,
    };
    let node = |id: &str, site: &str, addrs: &[&str]| NodeInfo {
        node: Node {
            id: id.into(),
            site: site.into(),
            roles: vec![NodeRole::Edge, NodeRole::Dns],
            ports: NodePorts::default(),
            capacity_mbps: 0,
            drained: false,
        },
        addresses: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
        healthy: true,
        load_percent: 0,
    };
    let prefix = |cidr: &str, line: &str| {
        cidr.parse().ok().map(|cidr| LinePrefix {
            cidr,
            line: line.into(),
            region: None,
        })
    };
    let mut service = Service {
        id: "demo".into(),
        tenant: "t".into(),
        hostnames: vec!["www.demo.example".into()],
        origins: Vec::new(),
        cache_rules: Vec::new(),
        steering: Default::default(),
        tls: None,
        targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
        forward_targeted_cache_control: false,
        origin_ca_pem: None,
        defence: Default::default(),
    };
    service.steering.answer_count = 2;
    service.steering.fallback_sites = vec!["s3".into()];
    let snap = DnsSnapshot {
        zone: "cdn.lingjing.test.".into(),
        sites: vec![
            site("s1", "telecom"),
            site("s2", "unicom"),
            site("s3", "bgp"),
        ],
        nodes: vec![
            node("n1", "s1", &["192.0.2.1", "2001:db8::1"]),
            node("n2", "s1", &["192.0.2.2"]),
            node("n3", "s2", &["198.51.100.1", "2001:db8::3"]),
            node("n4", "s3", &["203.0.113.1"]),
        ],
        prefixes: [
            prefix("198.51.100.0/24", "telecom"),
            prefix("203.0.113.0/24", "unicom"),
            prefix("2001:db8:1::/48", "telecom"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        services: vec![service],
        ..DnsSnapshot::default()
    };
    match Gslb::build(&snap, 1) {
        Ok(g) => g,
        Err(e) => panic!("the fuzz snapshot is valid: {e}"),
    }
}
