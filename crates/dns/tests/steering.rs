//! Steering decisions over the demo topology, through the pure `Gslb` (no sockets):
//! per-line and per-region answers, ECS scope, weights, health and drain, fallbacks, and
//! the explanation of each choice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use common::{DEMO, addr_of, demo_dns, node_mut};
use hickory_proto::rr::RecordType;
use lingjing_dns::{ClientInfo, Family, Gslb, Nearness, Rcode, Rdata, Rule};
use lingjing_model::{DnsSnapshot, IpPool, LinePrefix};

fn ecs(subnet: &str) -> ClientInfo {
    let net: ipnet::IpNet = subnet.parse().unwrap();
    ClientInfo {
        addr: "127.0.0.1".parse().unwrap(),
        ecs: Some((net.network(), net.prefix_len())),
    }
}

fn answer(g: &Gslb, client: &ClientInfo) -> Vec<IpAddr> {
    g.answer(DEMO, RecordType::A, client)
        .answers
        .iter()
        .filter_map(|(_, r)| match r {
            Rdata::Addr(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn gslb(body: &DnsSnapshot) -> Gslb {
    Gslb::build(body, 7).unwrap()
}

#[test]
fn each_city_gets_its_own_edge_node() {
    let body = demo_dns();
    let g = gslb(&body);
    for (subnet, node) in [
        ("198.51.100.0/26", "wuxi-1-e1"),
        ("198.51.100.64/26", "suqian-1-e1"),
        ("198.51.100.128/26", "taizhou-1-e1"),
        ("203.0.113.0/26", "wuxi-1-e1"),
        ("192.0.2.64/32", "suqian-1-e1"),
        ("2001:db8:1:0::/64", "wuxi-1-e1"),
        ("2001:db8:3:2::/64", "taizhou-1-e1"),
    ] {
        assert_eq!(
            answer(&g, &ecs(subnet)),
            vec![addr_of(&body, node)],
            "{subnet}"
        );
    }
    let d = g.answer(DEMO, RecordType::A, &ecs("198.51.100.0/26"));
    assert_eq!(d.rcode, Rcode::NoError);
    assert!(d.authoritative);
    // The demo policy's TTL.
    assert_eq!(d.answers[0].0, 30);
}

#[test]
fn ecs_scope_is_the_matching_line_prefix() {
    let g = gslb(&demo_dns());
    // A /32 inside a /26 line prefix: the answer holds for the whole /26.
    let d = g.answer(DEMO, RecordType::A, &ecs("198.51.100.7/32"));
    assert_eq!(d.ecs_scope, Some(26));
    // A /24 source spanning four /26 of different regions: the answer is for one /26.
    let d = g.answer(DEMO, RecordType::A, &ecs("198.51.100.0/24"));
    assert_eq!(d.ecs_scope, Some(26));
    let d = g.answer(DEMO, RecordType::A, &ecs("2001:db8:1:0::/56"));
    assert_eq!(d.ecs_scope, Some(64));
    // No ECS: no scope.
    let d = g.answer(
        DEMO,
        RecordType::A,
        &ClientInfo {
            addr: "198.51.100.1".parse().unwrap(),
            ecs: None,
        },
    );
    assert_eq!(d.ecs_scope, None);
    // ECS /0: not tailored, scope 0.
    let d = g.answer(DEMO, RecordType::A, &ecs("0.0.0.0/0"));
    assert_eq!(d.ecs_scope, Some(0));
}

#[test]
fn the_source_address_classifies_without_ecs() {
    let body = demo_dns();
    let g = gslb(&body);
    let client = ClientInfo {
        addr: "198.51.100.130".parse().unwrap(),
        ecs: None,
    };
    assert_eq!(answer(&g, &client), vec![addr_of(&body, "taizhou-1-e1")]);
}

#[test]
fn weights_spread_clients_in_proportion_and_each_client_keeps_its_answer() {
    let mut body = demo_dns();
    // Many /24s of telecom clients in Jiangxi: every Jiangsu site is "same country".
    body.prefixes.push(LinePrefix {
        cidr: "10.0.0.0/8".parse().unwrap(),
        line: "telecom".into(),
        region: Some("cn-jx".into()),
    });
    let policy = &mut body.services[0].steering;
    policy.site_weights.insert("wuxi-1".into(), 3);
    policy.site_weights.insert("suqian-1".into(), 1);
    policy.site_weights.insert("taizhou-1".into(), 0);
    let g = gslb(&body);
    let mut counts: HashMap<IpAddr, u32> = HashMap::new();
    let n = 4000;
    for i in 0..n {
        let subnet = format!("10.{}.{}.0/24", i / 256, i % 256);
        let got = answer(&g, &ecs(&subnet));
        assert_eq!(got.len(), 1);
        // Stable: the same client subnet gets the same answer.
        assert_eq!(got, answer(&g, &ecs(&subnet)));
        *counts.entry(got[0]).or_default() += 1;
    }
    let wuxi = counts
        .get(&addr_of(&body, "wuxi-1-e1"))
        .copied()
        .unwrap_or(0);
    let suqian = counts
        .get(&addr_of(&body, "suqian-1-e1"))
        .copied()
        .unwrap_or(0);
    let taizhou = counts
        .get(&addr_of(&body, "taizhou-1-e1"))
        .copied()
        .unwrap_or(0);
    assert_eq!(taizhou, 0, "weight 0 never answers while others can");
    assert_eq!(wuxi + suqian, n);
    let share = f64::from(wuxi) / f64::from(n);
    assert!((0.70..0.80).contains(&share), "wuxi share {share}");
    // The weighted order depends on the /24: its scope is at least /24.
    let d = g.answer(DEMO, RecordType::A, &ecs("10.1.2.3/32"));
    assert_eq!(d.ecs_scope, Some(24));
}

#[test]
fn unhealthy_and_drained_nodes_are_skipped() {
    let mut body = demo_dns();
    let wuxi_client = ecs("198.51.100.0/26");
    node_mut(&mut body, "wuxi-1-e1").healthy = false;
    let g = gslb(&body);
    let got = answer(&g, &wuxi_client);
    assert_eq!(got.len(), 1);
    assert!(
        got[0] == addr_of(&body, "suqian-1-e1") || got[0] == addr_of(&body, "taizhou-1-e1"),
        "{got:?}"
    );
    let e = g
        .explain(DEMO, Family::V4, &wuxi_client)
        .expect("a service name");
    assert_eq!(
        e.rule,
        Rule::ClientLine {
            line: "telecom".into(),
            nearness: Nearness::SameProvince
        }
    );
    let wuxi = e.candidates.iter().find(|c| c.node == "wuxi-1-e1").unwrap();
    assert_eq!(wuxi.verdict, "dropped: unhealthy");

    node_mut(&mut body, "wuxi-1-e1").healthy = true;
    node_mut(&mut body, "wuxi-1-e1").node.drained = true;
    let g = gslb(&body);
    assert_ne!(answer(&g, &wuxi_client), vec![addr_of(&body, "wuxi-1-e1")]);
    let e = g.explain(DEMO, Family::V4, &wuxi_client).unwrap();
    let wuxi = e.candidates.iter().find(|c| c.node == "wuxi-1-e1").unwrap();
    assert_eq!(wuxi.verdict, "dropped: drained");
}

#[test]
fn nodes_over_their_capacity_share_are_skipped_until_they_have_room() {
    let mut body = demo_dns();
    let wuxi_client = ecs("198.51.100.0/26");
    assert_eq!(body.services[0].steering.max_load_percent, 90);
    node_mut(&mut body, "wuxi-1-e1").load_percent = 89;
    let g = gslb(&body);
    assert_eq!(answer(&g, &wuxi_client), vec![addr_of(&body, "wuxi-1-e1")]);

    node_mut(&mut body, "wuxi-1-e1").load_percent = 90;
    let g = gslb(&body);
    let got = answer(&g, &wuxi_client);
    assert!(
        got == vec![addr_of(&body, "suqian-1-e1")] || got == vec![addr_of(&body, "taizhou-1-e1")],
        "{got:?}"
    );
    let e = g.explain(DEMO, Family::V4, &wuxi_client).unwrap();
    let wuxi = e.candidates.iter().find(|c| c.node == "wuxi-1-e1").unwrap();
    assert_eq!(wuxi.verdict, "skipped: at 90% of capacity (policy max 90%)");

    // Every edge node and the fallback parent over their share: the answer is still
    // never empty — the nearest overloaded edge node answers.
    for id in ["wuxi-1-e1", "suqian-1-e1", "taizhou-1-e1", "nanjing-1-p1"] {
        node_mut(&mut body, id).load_percent = 120;
    }
    let g = gslb(&body);
    assert_eq!(answer(&g, &wuxi_client), vec![addr_of(&body, "wuxi-1-e1")]);
    assert!(matches!(
        g.explain(DEMO, Family::V4, &wuxi_client).unwrap().rule,
        Rule::AnyHealthyNode { .. }
    ));
    // The parent has room again: fallback sites come before overloaded edges.
    node_mut(&mut body, "nanjing-1-p1").load_percent = 10;
    let g = gslb(&body);
    assert_eq!(
        answer(&g, &wuxi_client),
        vec![addr_of(&body, "nanjing-1-p1")]
    );
}

#[test]
fn fallback_sites_answer_when_no_edge_node_can() {
    let mut body = demo_dns();
    for id in ["wuxi-1-e1", "suqian-1-e1", "taizhou-1-e1"] {
        node_mut(&mut body, id).healthy = false;
    }
    let g = gslb(&body);
    let client = ecs("198.51.100.0/26");
    assert_eq!(answer(&g, &client), vec![addr_of(&body, "nanjing-1-p1")]);
    let e = g.explain(DEMO, Family::V4, &client).unwrap();
    assert!(matches!(e.rule, Rule::FallbackSites { .. }), "{:?}", e.rule);
    assert_eq!(e.rule_text, "fallback sites, same province");
    // The DNS-only node of the fallback site is never handed out.
    assert!(!e.candidates.iter().any(|c| c.node == "nanjing-1-dns1"));

    // Nothing healthy at all: an empty answer, with the SOA (NODATA).
    node_mut(&mut body, "nanjing-1-p1").healthy = false;
    let g = gslb(&body);
    let d = g.answer(DEMO, RecordType::A, &client);
    assert!(d.answers.is_empty());
    assert!(d.negative);
    assert_eq!(d.rcode, Rcode::NoError);
    assert_eq!(
        g.explain(DEMO, Family::V4, &client).unwrap().rule,
        Rule::NoHealthyNode
    );
}

#[test]
fn fallback_lines_then_any_healthy_node() {
    let mut body = demo_dns();
    body.prefixes.push(LinePrefix {
        cidr: "10.0.0.0/8".parse().unwrap(),
        line: "edu".into(),
        region: Some("cn-js-suqian".into()),
    });
    // Only Taizhou is on unicom.
    for site in &mut body.sites {
        if site.id != "taizhou-1" {
            site.lines.retain(|l| l != "unicom");
        }
    }
    body.services[0].steering.fallback_lines = vec!["unicom".into()];
    let g = gslb(&body);
    let client = ecs("10.0.0.0/24");
    assert_eq!(answer(&g, &client), vec![addr_of(&body, "taizhou-1-e1")]);
    let e = g.explain(DEMO, Family::V4, &client).unwrap();
    assert_eq!(e.line.as_deref(), Some("edu"));
    assert_eq!(e.region.as_deref(), Some("cn-js-suqian"));
    assert_eq!(e.classified_by, "ecs");
    assert_eq!(
        e.rule,
        Rule::FallbackLine {
            line: "unicom".into(),
            nearness: Nearness::SameProvince
        }
    );

    // No fallback line, no fallback site: any healthy node, nearest first.
    let policy = &mut body.services[0].steering;
    policy.fallback_lines.clear();
    policy.fallback_sites.clear();
    let g = gslb(&body);
    assert_eq!(answer(&g, &client), vec![addr_of(&body, "suqian-1-e1")]);
    let e = g.explain(DEMO, Family::V4, &client).unwrap();
    assert_eq!(
        e.rule,
        Rule::AnyHealthyNode {
            nearness: Nearness::SameCity
        }
    );
}

#[test]
fn the_policy_limits_sites_and_sets_the_answer_count() {
    let mut body = demo_dns();
    let policy = &mut body.services[0].steering;
    policy.sites = vec!["suqian-1".into(), "taizhou-1".into()];
    policy.answer_count = 2;
    let g = gslb(&body);
    let client = ecs("198.51.100.0/26");
    let mut got = answer(&g, &client);
    got.sort();
    let mut want = vec![
        addr_of(&body, "suqian-1-e1"),
        addr_of(&body, "taizhou-1-e1"),
    ];
    want.sort();
    assert_eq!(got, want);
    let e = g.explain(DEMO, Family::V4, &client).unwrap();
    let wuxi = e.candidates.iter().find(|c| c.node == "wuxi-1-e1").unwrap();
    assert_eq!(wuxi.verdict, "dropped: site not allowed by the policy");
    assert_eq!(e.answer.len(), 2);
    // The explanation serialises (for the API).
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["rule"]["kind"], "client_line");
    assert_eq!(json["family"], "A");
}

#[test]
fn multi_line_nodes_answer_with_the_address_on_the_clients_line() {
    let mut body = demo_dns();
    for (id, line, cidr) in [
        ("wuxi-1-telecom", "telecom", "127.0.2.0/29"),
        ("wuxi-1-unicom", "unicom", "127.0.3.0/29"),
    ] {
        body.pools.push(IpPool {
            id: id.into(),
            site: "wuxi-1".into(),
            line: Some(line.into()),
            cidr: cidr.parse().unwrap(),
            reserved: Vec::new(),
        });
    }
    node_mut(&mut body, "wuxi-1-e1").addresses =
        vec!["127.0.2.1".parse().unwrap(), "127.0.3.1".parse().unwrap()];
    let g = gslb(&body);
    assert_eq!(
        answer(&g, &ecs("198.51.100.0/26")),
        vec!["127.0.2.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        answer(&g, &ecs("203.0.113.0/26")),
        vec!["127.0.3.1".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn aaaa_uses_the_nodes_ipv6_addresses() {
    let mut body = demo_dns();
    let g = gslb(&body);
    // No IPv6 address anywhere: NODATA.
    let d = g.answer(DEMO, RecordType::AAAA, &ecs("198.51.100.0/26"));
    assert!(d.answers.is_empty() && d.negative);
    node_mut(&mut body, "suqian-1-e1")
        .addresses
        .push("2001:db8:ffff::2".parse().unwrap());
    let g = gslb(&body);
    // The Wuxi client's nearest IPv6-capable node is Suqian.
    let d = g.answer(DEMO, RecordType::AAAA, &ecs("198.51.100.0/26"));
    assert_eq!(
        d.answers,
        vec![(30, Rdata::Addr("2001:db8:ffff::2".parse().unwrap()))]
    );
}

#[test]
fn names_of_the_zone() {
    let body = demo_dns();
    let g = gslb(&body);
    let client = ecs("198.51.100.0/26");
    let d = g.answer("CDN.Lingjing.TEST.", RecordType::SOA, &client);
    assert_eq!(d.answers, vec![(3600, Rdata::Soa)]);
    assert_eq!(d.ecs_scope, Some(0));
    assert_eq!(g.soa().serial, 7);
    let d = g.answer("cdn.lingjing.test.", RecordType::NS, &client);
    assert_eq!(d.answers, vec![(3600, Rdata::Ns)]);
    assert_eq!(d.glue, vec![addr_of(&body, "nanjing-1-dns1")]);
    let d = g.answer("ns1.cdn.lingjing.test.", RecordType::A, &client);
    assert_eq!(
        d.answers,
        vec![(3600, Rdata::Addr(addr_of(&body, "nanjing-1-dns1")))]
    );
    let d = g.answer("cdn.lingjing.test.", RecordType::A, &client);
    assert!(d.answers.is_empty() && d.negative && d.rcode == Rcode::NoError);
    let d = g.answer("nope.cdn.lingjing.test.", RecordType::A, &client);
    assert!(d.negative && d.rcode == Rcode::NxDomain);
    let d = g.answer("x.demo.cdn.lingjing.test.", RecordType::A, &client);
    assert_eq!(d.rcode, Rcode::NxDomain);
    let d = g.answer("DEMO.cdn.lingjing.test.", RecordType::MX, &client);
    assert!(d.negative && d.rcode == Rcode::NoError);
    let d = g.answer("example.com.", RecordType::A, &client);
    assert_eq!(d.rcode, Rcode::Refused);
    assert!(!d.authoritative);
    let d = g.answer("lingjing.test.", RecordType::SOA, &client);
    assert_eq!(d.rcode, Rcode::Refused);
    assert!(
        g.explain("nope.cdn.lingjing.test.", Family::V4, &client)
            .is_none()
    );
}
