#!/usr/bin/env python3
"""Flood generator for bench/defence.sh: how long until a flood is refused, here and fleet-wide.

Floods edge A (--target) from several source addresses in 127.0.0.0/8, each at --rate
requests a second (HTTP/1.1 GETs over --conns kept-alive connections per source, paced to
a fixed schedule; a new connection whenever the server closes one), and at the same time
probes edge B (--probe), which the flood never touches, with one GET on a new connection
from each flood source every --probe-interval seconds (well below any per-source
threshold). Before the flood every source must get a 200 from both edges.

Times are seconds after t0, the moment the flood starts (time.monotonic, one clock for
everything):
  t_detect       first 429 answer edge A gave a flood request
  t_refuse_a     first refusal of any kind on A (429, 403, or the connection closed
                 without an answer: refused at accept), with its kind
  t_fleet        first 429 edge B gave a probe from a flood source
  t_fleet_all    when every flood source has had a 429 from B (all blocked there)
  (b_first_kind: the kind of B's first refusal, in case it is not a 429)
The run ends when all of these are known, or after --timeout seconds.

Prints FLOOD_RESULT {json}, and the same as FLOOD_KV key=value ... for the shell. Only
the Python standard library is used; the sockets are bound to their source address before
connect (IP_BIND_ADDRESS_NO_PORT, so the port is chosen per destination and thousands of
reconnects do not run out of ports).
"""

import argparse
import asyncio
import collections
import json
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Closed(Exception):
    """The server closed the connection before a whole answer."""


async def connect(source: str, host: str, port: int, timeout: float):
    """A TCP connection from `source` (port chosen at connect) to host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


async def request(reader, writer, req: bytes, timeout: float):
    """Sends one request; returns (status, server closes after it). Raises Closed when the
    connection ends before a whole answer."""
    writer.write(req)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as e:
        raise Closed() from e
    except (ConnectionResetError, BrokenPipeError) as e:
        raise Closed() from e
    lines = head.decode("latin-1").lower().split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError) as e:
        raise Closed() from e
    length = 0
    close = False
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        value = value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and "close" in value:
            close = True
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
    try:
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await asyncio.wait_for(reader.readexactly(length), timeout)
    except (asyncio.IncompleteReadError, ConnectionResetError) as e:
        raise Closed() from e
    return status, close


def shut(writer) -> None:
    try:
        writer.close()
    except Exception:  # noqa: BLE001 - already gone
        pass


class Run:
    """What the flood and the probes saw."""

    def __init__(self, sources):
        self.t0 = 0.0
        self.t0_wall_ms = 0
        self.sources = sources
        self.a = collections.Counter()  # edge A's answers to the flood, by kind
        self.b = collections.Counter()  # edge B's answers to the probes, by kind
        self.sent = collections.Counter()  # flood requests sent, by source
        self.t_detect = None
        self.t_refuse_a = None
        self.a_first_kind = None
        self.t_fleet = None
        self.b_first_kind = None
        self.b_refused = {}  # source -> seconds of its first 429 on B
        self.b_first_any = {}  # source -> seconds of its first refusal of any kind on B
        self.sent_before_detect = 0
        self.done = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def saw_a(self, kind: str) -> None:
        self.a[kind] += 1
        if kind == "200":
            return
        t = self.now()
        if self.t_refuse_a is None:
            self.t_refuse_a, self.a_first_kind = t, kind
        if kind == "429" and self.t_detect is None:
            self.t_detect = t
            self.sent_before_detect = sum(self.sent.values())
        self.check()

    def saw_b(self, source: str, kind: str) -> None:
        self.b[kind] += 1
        if kind == "200":
            return
        t = self.now()
        self.b_first_any.setdefault(source, t)
        if self.b_first_kind is None:
            self.b_first_kind = kind
        if kind == "429":
            self.b_refused.setdefault(source, t)
            if self.t_fleet is None:
                self.t_fleet = t
        self.check()

    def check(self) -> None:
        if self.t_detect is not None and len(self.b_refused) == len(self.sources):
            self.done.set()


async def flood_conn(run: Run, a, source: str, k: int, stop: asyncio.Event) -> None:
    """One of a source's connections: requests at rate/conns a second on a fixed schedule
    (offset by k so a source's connections interleave); reconnects when closed."""
    host, port = a.target
    interval = a.conns / a.rate
    req = f"GET {a.path} HTTP/1.1\r\nHost: {a.host}\r\nUser-Agent: lingjing-bench-flood\r\n\r\n".encode()
    next_at = time.monotonic() + k / a.rate
    conn = None
    while not stop.is_set():
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            next_at = time.monotonic()  # far behind: do not burst to catch up
        next_at += interval
        if stop.is_set():
            break
        try:
            if conn is None:
                conn = await connect(source, host, port, a.io_timeout)
            run.sent[source] += 1
            status, close = await request(*conn, req, a.io_timeout)
            run.saw_a(str(status))
            if close:
                shut(conn[1])
                conn = None
        except Closed:
            run.saw_a("closed")
            if conn:
                shut(conn[1])
            conn = None
        except (OSError, asyncio.TimeoutError) as e:
            run.saw_a("error:" + type(e).__name__)
            if conn:
                shut(conn[1])
            conn = None
    if conn:
        shut(conn[1])


async def one_get(source: str, to, a, timeout: float) -> str:
    """One GET from `source` to `to` on a new connection (closed after): the status as a
    string, "closed" when the server closed without answering, "error:..." otherwise."""
    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}\r\nUser-Agent: lingjing-bench-probe\r\n"
           "Connection: close\r\n\r\n").encode()
    conn = None
    try:
        conn = await connect(source, to[0], to[1], timeout)
        status, _ = await request(*conn, req, timeout)
        return str(status)
    except Closed:
        return "closed"
    except (OSError, asyncio.TimeoutError) as e:
        return "error:" + type(e).__name__
    finally:
        if conn:
            shut(conn[1])


async def probe(run: Run, a, source: str, stop: asyncio.Event) -> None:
    """Asks edge B from `source` every probe interval until B has refused it with a 429."""
    next_at = time.monotonic()
    while not stop.is_set() and source not in run.b_refused:
        kind = await one_get(source, a.probe, a, a.io_timeout)
        run.saw_b(source, kind)
        next_at += a.probe_interval
        delay = next_at - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        else:
            next_at = time.monotonic()


def hostport(s: str):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=hostport, required=True, help="edge A, HOST:PORT (flooded)")
    p.add_argument("--probe", type=hostport, required=True, help="edge B, HOST:PORT (probed)")
    p.add_argument("--host", default="www.demo.example", help="Host header")
    p.add_argument("--path", default="/")
    p.add_argument("--sources", required=True, help="flood source addresses, comma-separated")
    p.add_argument("--rate", type=float, default=150.0, help="requests/s from each source")
    p.add_argument("--conns", type=int, default=2, help="kept-alive connections per source")
    p.add_argument("--probe-interval", type=float, default=0.05, help="seconds between probes of B")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds the flood may last")
    p.add_argument("--io-timeout", type=float, default=5.0, help="seconds per connect or answer")
    a = p.parse_args()
    sources = [s for s in a.sources.split(",") if s]

    # Before the flood: every source is served by both edges (this warms the cache too).
    for s in sources:
        for name, to in (("A", a.target), ("B", a.probe)):
            kind = await one_get(s, to, a, a.io_timeout)
            if kind != "200":
                print(f"FLOOD_ERROR before the flood, edge {name} answered {kind} to {s}", flush=True)
                return 1

    run = Run(sources)
    stop = asyncio.Event()
    run.t0 = time.monotonic()
    run.t0_wall_ms = int(time.time() * 1000)
    tasks = [asyncio.create_task(flood_conn(run, a, s, k, stop))
             for s in sources for k in range(a.conns)]
    tasks += [asyncio.create_task(probe(run, a, s, stop)) for s in sources]
    try:
        await asyncio.wait_for(run.done.wait(), a.timeout)
    except asyncio.TimeoutError:
        pass
    elapsed = run.now()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)

    def r3(v):
        return None if v is None else round(v, 3)

    # The rate the flood reached before edge A refused it (or over the whole run).
    rate_window = run.t_detect if run.t_detect else elapsed
    sent_window = run.sent_before_detect if run.t_detect else sum(run.sent.values())
    out = {
        "t0_wall_ms": run.t0_wall_ms,
        "t_detect": r3(run.t_detect),
        "t_refuse_a": r3(run.t_refuse_a),
        "a_first_kind": run.a_first_kind,
        "t_fleet": r3(run.t_fleet),
        "t_fleet_all": r3(max(run.b_refused.values())) if len(run.b_refused) == len(sources) else None,
        "b_first_kind": run.b_first_kind,
        "b_refused_sources": len(run.b_refused),
        "sources": len(sources),
        "elapsed": r3(elapsed),
        "sent": sum(run.sent.values()),
        "rate_per_source": round(sent_window / rate_window / len(sources), 1) if rate_window > 0 else None,
        "a": dict(run.a),
        "b": dict(run.b),
    }
    print("FLOOD_RESULT " + json.dumps(out, sort_keys=True), flush=True)
    # The same as key=value words for the shell (answers as KIND:COUNT,...; none: n/a).
    words = []
    for k, v in sorted(out.items()):
        if isinstance(v, dict):
            v = ",".join(f"{kind}:{n}" for kind, n in sorted(v.items())) or "none"
        words.append(f"{k}={'n/a' if v is None else v}")
    print("FLOOD_KV " + " ".join(words), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
