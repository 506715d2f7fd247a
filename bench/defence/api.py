#!/usr/bin/env python3
"""Control plane calls of bench/defence.sh (the REST API of a `lingjing up` data directory).

  api.py DATA_DIR set-defence SERVICE JSON   merges JSON (e.g. '{"source_rps": 50}') into the
                                             service's `defence` settings (GET, PUT)
  api.py DATA_DIR events SERVICE T0_WALL_MS  one line per defence event of SERVICE:
                                             EVENT key=value ... (times in seconds after
                                             T0_WALL_MS, the flood's start, wall clock)

The endpoint, CA and operator token are read from DATA_DIR (`endpoint`, `ca.pem`,
`operator.token`, written by `lingjing up`). Only the Python standard library is used.
"""

import json
import os
import ssl
import sys
import urllib.request


def client(data_dir: str):
    with open(os.path.join(data_dir, "endpoint")) as f:
        endpoint = f.read().strip().rstrip("/")
    with open(os.path.join(data_dir, "operator.token")) as f:
        token = f.read().strip()
    ctx = None
    if endpoint.startswith("https://"):
        ctx = ssl.create_default_context(cafile=os.path.join(data_dir, "ca.pem"))

    def call(method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(endpoint + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read() or b"null")

    return call


def set_defence(call, service: str, settings: str) -> None:
    view = call("GET", f"/v1/services/{service}")
    # View-only fields the API adds to GET; a PUT takes the service document alone.
    for k in ("cname", "hostname_status"):
        view.pop(k, None)
    defence = dict(view.get("defence") or {})
    defence.update(json.loads(settings))
    view["defence"] = defence
    call("PUT", f"/v1/services/{service}", view)
    print(json.dumps(call("GET", f"/v1/services/{service}")["defence"], sort_keys=True))


def ms(v):
    """A timestamp in ms since the epoch, from a number or an RFC 3339 string."""
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def events(call, service: str, t0_ms: str) -> None:
    t0 = float(t0_ms)
    for e in call("GET", f"/v1/defence/events?service={service}"):
        fields = {"id": e.get("id")}
        for k in ("started", "detected", "ended"):
            # The field may be named started or started_ms.
            v = ms(e.get(k, e.get(f"{k}_ms")))
            fields[k] = "n/a" if v is None else f"{(v - t0) / 1000:.3f}"
        fields["peak_rps"] = e.get("peak_rps")
        fields["dropped"] = e.get("dropped")
        fields["rule"] = e.get("rule")
        tops = e.get("top_sources") or []
        fields["top_sources"] = len(tops)
        fields["nodes"] = ",".join(str(n if isinstance(n, str) else n.get("node", n))
                                   for n in (e.get("nodes") or []))
        print("EVENT " + " ".join(f"{k}={v}" for k, v in fields.items()))


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    call = client(sys.argv[1])
    cmd, args = sys.argv[2], sys.argv[3:]
    if cmd == "set-defence" and len(args) == 2:
        set_defence(call, *args)
    elif cmd == "events" and len(args) == 2:
        events(call, *args)
    elif cmd == "raw" and len(args) == 1:
        print(json.dumps(call("GET", args[0]), indent=1, sort_keys=True))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
