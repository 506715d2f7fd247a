//! The demo topology `lingjing up` seeds once: a few Jiangsu sites (Wuxi, Suqian, Taizhou)
//! on the telecom, unicom and mobile lines, a regional parent site in Nanjing, IP pools on
//! loopback so every node has its own address, the tenant `demo` and its service
//! `www.demo.example` (CNAME target `demo.cdn.lingjing.test.`), and object storage: a
//! storage node in each of the three edge sites and an S3 gateway node in Nanjing, with
//! the service `site` (`site.demo.example`) served from the demo bucket.
//!
//! Client lines use the documentation ranges (198.51.100.0/24 telecom, 203.0.113.0/24
//! unicom, 192.0.2.0/24 mobile, and 2001:db8::/32 for IPv6), split per city, so a client can
//! pose as any line and region with EDNS Client Subnet (`dig +subnet=198.51.100.1/32`).

use std::net::SocketAddr;

use lingjing_model::{
    CacheRule, IpPool, Line, LinePrefix, Node, NodePorts, NodeRole, Origin, Region, RegionLevel,
    Service, Site, SteeringPolicy, Tenant, Tier,
};

/// The port of the demo storage nodes' block API (each on its own loopback address).
pub const STORAGE_PORT: u16 = 7810;

/// The demo bucket `up` creates for tenant `demo`.
pub const DEMO_BUCKET: &str = "demo";

/// Everything the demo consists of, in the order it must be created.
#[derive(Debug, Clone)]
pub struct DemoTopology {
    pub regions: Vec<Region>,
    pub lines: Vec<Line>,
    pub prefixes: Vec<LinePrefix>,
    pub sites: Vec<Site>,
    pub nodes: Vec<Node>,
    pub pools: Vec<IpPool>,
    /// (pool, node): one address of the pool for the node.
    pub allocations: Vec<(String, String)>,
    pub tenants: Vec<Tenant>,
    pub services: Vec<Service>,
}

fn region(id: &str, name: &str, parent: Option<&str>, level: RegionLevel, tier: Tier) -> Region {
    Region {
        id: id.into(),
        name: name.into(),
        parent: parent.map(Into::into),
        level,
        tier,
    }
}

fn prefix(cidr: &str, line: &str, region: &str) -> Option<LinePrefix> {
    Some(LinePrefix {
        cidr: cidr.parse().ok()?,
        line: line.into(),
        region: Some(region.into()),
    })
}

/// The demo topology, with the demo service's origin at `origin`.
pub fn demo_topology(origin: SocketAddr) -> DemoTopology {
    use RegionLevel::*;
    let regions = vec![
        region("cn", "China", None, Country, Tier::Core),
        region("cn-js", "Jiangsu", Some("cn"), Province, Tier::Regional),
        region(
            "cn-js-nanjing",
            "Nanjing",
            Some("cn-js"),
            City,
            Tier::Regional,
        ),
        region("cn-js-wuxi", "Wuxi", Some("cn-js"), City, Tier::Edge),
        region("cn-js-suqian", "Suqian", Some("cn-js"), City, Tier::Edge),
        region("cn-js-taizhou", "Taizhou", Some("cn-js"), City, Tier::Edge),
        region("cn-jx", "Jiangxi", Some("cn"), Province, Tier::Regional),
    ];
    let lines: Vec<Line> = [
        ("telecom", "China Telecom"),
        ("unicom", "China Unicom"),
        ("mobile", "China Mobile"),
    ]
    .into_iter()
    .map(|(id, name)| Line {
        id: id.into(),
        name: name.into(),
        description: Some(format!("{name} clients (demo: documentation ranges)")),
    })
    .collect();
    let cities = ["cn-js-wuxi", "cn-js-suqian", "cn-js-taizhou", "cn-jx"];
    let mut prefixes = Vec::new();
    for (line, net, v6) in [
        ("telecom", "198.51.100", 1),
        ("unicom", "203.0.113", 2),
        ("mobile", "192.0.2", 3),
    ] {
        for (i, city) in cities.iter().enumerate() {
            prefixes.extend(prefix(&format!("{net}.{}/26", i * 64), line, city));
            prefixes.extend(prefix(&format!("2001:db8:{v6}:{i}::/64"), line, city));
        }
    }
    let all_lines = vec![
        "telecom".to_owned(),
        "unicom".to_owned(),
        "mobile".to_owned(),
    ];
    let site = |id: &str, name: &str, region: &str, parent: Option<&str>, mbps: u64| Site {
        id: id.into(),
        name: name.into(),
        region: region.into(),
        lines: all_lines.clone(),
        bandwidth_mbps: mbps,
        parent: parent.map(Into::into),
    };
    let sites = vec![
        site(
            "nanjing-1",
            "Nanjing regional IDC",
            "cn-js-nanjing",
            None,
            100_000,
        ),
        site(
            "wuxi-1",
            "Wuxi edge",
            "cn-js-wuxi",
            Some("nanjing-1"),
            10_000,
        ),
        site(
            "suqian-1",
            "Suqian edge",
            "cn-js-suqian",
            Some("nanjing-1"),
            10_000,
        ),
        site(
            "taizhou-1",
            "Taizhou edge",
            "cn-js-taizhou",
            Some("nanjing-1"),
            10_000,
        ),
    ];
    let node = |id: &str, site: &str, roles: Vec<NodeRole>, mbps: u64| Node {
        id: id.into(),
        site: site.into(),
        roles,
        ports: NodePorts::default(),
        capacity_mbps: mbps,
        drained: false,
    };
    let storage_node = |id: &str, site: &str| Node {
        ports: NodePorts {
            http: STORAGE_PORT,
            https: STORAGE_PORT,
            admin: STORAGE_PORT,
        },
        ..node(id, site, vec![NodeRole::Storage], 1_000)
    };
    let nodes = vec![
        node("nanjing-1-p1", "nanjing-1", vec![NodeRole::Parent], 40_000),
        node("nanjing-1-dns1", "nanjing-1", vec![NodeRole::Dns], 1_000),
        node("wuxi-1-e1", "wuxi-1", vec![NodeRole::Edge], 10_000),
        node("suqian-1-e1", "suqian-1", vec![NodeRole::Edge], 10_000),
        node("taizhou-1-e1", "taizhou-1", vec![NodeRole::Edge], 10_000),
        // Object storage: one storage node in each of three sites (the block API and its
        // /healthz on port 7810 of the node's own loopback address), and the S3 gateway.
        storage_node("wuxi-1-s1", "wuxi-1"),
        storage_node("suqian-1-s1", "suqian-1"),
        storage_node("taizhou-1-s1", "taizhou-1"),
        node("nanjing-1-s3", "nanjing-1", vec![NodeRole::S3], 1_000),
        // Edge AI: one node next to Wuxi's cameras (inference on 127.0.0.1:7820 in `up`).
        node("wuxi-1-ai1", "wuxi-1", vec![NodeRole::Aiot], 1_000),
    ];
    let pool = |id: &str, site: &str, cidr: &str| -> Option<IpPool> {
        Some(IpPool {
            id: id.into(),
            site: site.into(),
            line: None,
            cidr: cidr.parse().ok()?,
            reserved: Vec::new(),
        })
    };
    let pools: Vec<IpPool> = [
        pool("wuxi-1-lo", "wuxi-1", "127.0.1.0/29"),
        pool("suqian-1-lo", "suqian-1", "127.0.1.8/29"),
        pool("taizhou-1-lo", "taizhou-1", "127.0.1.16/29"),
        pool("nanjing-1-lo", "nanjing-1", "127.0.1.24/29"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let allocations = [
        ("wuxi-1-lo", "wuxi-1-e1"),
        ("suqian-1-lo", "suqian-1-e1"),
        ("taizhou-1-lo", "taizhou-1-e1"),
        ("nanjing-1-lo", "nanjing-1-p1"),
        ("nanjing-1-lo", "nanjing-1-dns1"),
        ("wuxi-1-lo", "wuxi-1-s1"),
        ("suqian-1-lo", "suqian-1-s1"),
        ("taizhou-1-lo", "taizhou-1-s1"),
        ("nanjing-1-lo", "nanjing-1-s3"),
        ("wuxi-1-lo", "wuxi-1-ai1"),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_owned(), n.to_owned()))
    .collect();
    let tenants = vec![Tenant {
        id: "demo".into(),
        name: "Demo tenant".into(),
        contact: Some("ops@demo.example".into()),
        quotas: Default::default(),
    }];
    let from_bucket = Service {
        id: "site".into(),
        tenant: "demo".into(),
        hostnames: vec![crate::site::SITE_HOSTNAME.into()],
        origins: vec![Origin {
            address: format!(
                "{}{DEMO_BUCKET}",
                lingjing_model::service::BUCKET_ORIGIN_PREFIX
            ),
            weight: 1,
            backup: false,
            tls: false,
            host_header: None,
            tls_skip_verify: false,
        }],
        cache_rules: Vec::new(),
        steering: SteeringPolicy {
            fallback_sites: vec!["nanjing-1".into()],
            ttl: 30,
            answer_count: 1,
            ..SteeringPolicy::default()
        },
        tls: None,
        targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
        forward_targeted_cache_control: false,
        origin_ca_pem: None,
        defence: Default::default(),
    };
    let services = vec![
        Service {
            id: "demo".into(),
            tenant: "demo".into(),
            hostnames: vec!["www.demo.example".into()],
            origins: vec![Origin {
                address: origin.to_string(),
                weight: 1,
                backup: false,
                tls: false,
                host_header: None,
                tls_skip_verify: false,
            }],
            cache_rules: vec![
                CacheRule {
                    path: "/assets/*".into(),
                    ttl_secs: Some(86_400),
                    bypass: false,
                    ignore_query: true,
                    sort_query: false,
                    key_headers: Vec::new(),
                    cache_set_cookie: false,
                },
                CacheRule {
                    path: "/api/*".into(),
                    ttl_secs: None,
                    bypass: true,
                    ignore_query: false,
                    sort_query: false,
                    key_headers: Vec::new(),
                    cache_set_cookie: false,
                },
            ],
            steering: SteeringPolicy {
                fallback_sites: vec!["nanjing-1".into()],
                ttl: 30,
                answer_count: 1,
                ..SteeringPolicy::default()
            },
            tls: None,
            targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
            forward_targeted_cache_control: false,
            origin_ca_pem: None,
            defence: Default::default(),
        },
        from_bucket,
    ];
    DemoTopology {
        regions,
        lines,
        prefixes,
        sites,
        nodes,
        pools,
        allocations,
        tenants,
        services,
    }
}

#[cfg(test)]
mod tests {
    use lingjing_model::Validate;

    use super::*;

    #[test]
    fn every_demo_resource_is_valid() {
        let t = demo_topology(crate::DEFAULT_LISTEN);
        t.regions
            .iter()
            .try_for_each(Validate::validate)
            .expect("regions");
        t.lines
            .iter()
            .try_for_each(Validate::validate)
            .expect("lines");
        t.prefixes
            .iter()
            .try_for_each(Validate::validate)
            .expect("prefixes");
        t.sites
            .iter()
            .try_for_each(Validate::validate)
            .expect("sites");
        t.nodes
            .iter()
            .try_for_each(Validate::validate)
            .expect("nodes");
        t.pools
            .iter()
            .try_for_each(Validate::validate)
            .expect("pools");
        t.tenants
            .iter()
            .try_for_each(Validate::validate)
            .expect("tenants");
        t.services
            .iter()
            .try_for_each(Validate::validate)
            .expect("services");
        assert_eq!(t.pools.len(), 4);
        let storage: Vec<_> = t
            .nodes
            .iter()
            .filter(|n| n.roles.contains(&NodeRole::Storage))
            .collect();
        assert_eq!(storage.len(), 3, "three storage nodes");
        let sites: std::collections::HashSet<_> = storage.iter().map(|n| &n.site).collect();
        assert_eq!(sites.len(), 3, "in three sites");
        for n in storage {
            assert!(
                t.allocations.iter().any(|(_, node)| node == &n.id),
                "{} has its own address",
                n.id
            );
        }
        assert_eq!(t.prefixes.len(), 24);
    }
}
