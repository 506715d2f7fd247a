#!/usr/bin/env python3
"""Seeds a control plane through its REST API for bench/console.sh: 3 regions, 20
sites, NODES nodes spread over them, 10 tenants (their service quota raised to SERVICES),
SERVICES services spread over the tenants (each with two hostnames, approved by the
operator). Prints a new API key of tenant `t-00` (whose
services are svc-00000, svc-00010, ...). Uses one keep-alive connection.

Usage: seed.py URL OPERATOR_TOKEN NODES SERVICES
"""

import http.client
import json
import sys
import urllib.parse


def main():
    url, token, nodes, services = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(path, body):
        conn.request("POST", path, json.dumps(body), headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            sys.exit(f"POST {path}: {resp.status} {data[:300]!r}")
        return json.loads(data) if data else None

    post("/v1/regions", {"id": "cn", "name": "China", "level": "country"})
    for p in ("js", "zj", "ah"):
        post("/v1/regions", {"id": f"cn-{p}", "name": f"Province {p}", "parent": "cn", "level": "province"})
    post("/v1/lines", {"id": "telecom", "name": "China Telecom"})
    sites = [f"site-{i:02}" for i in range(20)]
    for i, s in enumerate(sites):
        region = ("cn-js", "cn-zj", "cn-ah")[i % 3]
        post("/v1/sites", {"id": s, "name": f"Site {i}", "region": region, "lines": ["telecom"]})
    for i in range(nodes):
        roles = ["edge"] if i % 10 else ["edge", "dns"]
        post("/v1/nodes", {"id": f"node-{i:04}", "site": sites[i % len(sites)], "roles": roles,
                           "capacity_mbps": 10000, "drained": i % 97 == 0})
    tenants = [f"t-{i:02}" for i in range(10)]
    for t in tenants:
        # Each tenant holds a tenth of the services: above the default quota of 100.
        post("/v1/tenants", {"id": t, "name": f"Tenant {t}", "quotas": {"services": services}})
    for i in range(services):
        t = tenants[i % len(tenants)]
        post("/v1/services", {
            "id": f"svc-{i:05}", "tenant": t,
            "hostnames": [f"www.s{i}.{t}.example", f"img.s{i}.{t}.example"],
            "origins": [{"address": f"origin{i}.{t}.example:80"}],
        })
        # Approved, so DNS (and DNS explain) has every service, as in production.
        post(f"/v1/services/svc-{i:05}/verify", {"approve": True})
    key = post(f"/v1/tenants/{tenants[0]}/keys", {})
    print(key["secret"])


if __name__ == "__main__":
    main()
