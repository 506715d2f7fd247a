#!/usr/bin/env python3
"""Collapse test for bench/cdn.sh: N clients ask a cache for the same uncached URL at once.

Opens N keep-alive connections first, then releases all N GET requests together (a
barrier) and reads every response. The caller then counts how many requests for that URL
reached the origin (its access log); a cache that collapses perfectly sends one.

Prints one line: COLLAPSE_RESULT sent=N ok=... failed=... statuses=200:N elapsed_ms=...
Only the Python standard library is used.
"""

import argparse
import collections
import http.client
import sys
import threading
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1", help="server address")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True, help="the URL path, e.g. /slow/x")
    p.add_argument("--host-header", default="bench.example")
    p.add_argument("-n", type=int, default=200, help="concurrent requests")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()

    conns = []
    for _ in range(a.n):
        c = http.client.HTTPConnection(a.addr, a.port, timeout=a.timeout)
        c.connect()
        conns.append(c)

    barrier = threading.Barrier(a.n + 1)
    statuses: collections.Counter = collections.Counter()
    failures: list = []
    lock = threading.Lock()

    def one(c: http.client.HTTPConnection) -> None:
        barrier.wait()
        try:
            c.request("GET", a.path, headers={"Host": a.host_header})
            r = c.getresponse()
            r.read()
            with lock:
                statuses[r.status] += 1
        except Exception as e:  # noqa: BLE001 - any failure is a failed request
            with lock:
                failures.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    start = time.monotonic()
    barrier.wait()
    for t in threads:
        t.join(a.timeout + 5)
    elapsed_ms = (time.monotonic() - start) * 1000

    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    st = ",".join(f"{s}:{n}" for s, n in sorted(statuses.items())) or "none"
    print(
        f"COLLAPSE_RESULT sent={a.n} ok={ok} failed={len(failures)} statuses={st} "
        f"elapsed_ms={elapsed_ms:.0f}"
    )
    if failures:
        print(f"first failure: {failures[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
