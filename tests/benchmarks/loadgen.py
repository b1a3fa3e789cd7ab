"""An open-loop HTTP/1.1 load generator, run as its own process by the benchmarks.

``python -m tests.benchmarks.loadgen`` reads a JSON spec on stdin and prints one JSON
document of results on stdout::

    {"host": "127.0.0.1", "port": 8080, "requests": "/tmp/requests.bin",
     "rate": 200, "warmup_s": 5, "duration_s": 30, "connections": 64,
     "drain_s": 10, "count_containing": "\\"user_name\\":\\"Caller"}

``requests`` is a file of complete requests (request line, headers and body), each
preceded by its length as 4 big-endian bytes (:func:`write_requests`); request ``i``
is sent at ``start + i / rate``, whatever happened to the earlier ones (open loop).
All of them are read into memory before the clock starts. A latency runs from the
request's *scheduled* send time to the last byte of its response, so a request that
waits for a free connection, or behind a slow one, is charged for the wait (no
coordinated omission). Requests scheduled in the first ``warmup_s`` seconds are sent
but not measured.

The client is lean on purpose (the machine it shares with the service is small): a
pool of keep-alive connections on asyncio protocols, used round-robin, that parse only
the status line, ``Content-Length`` and the body. It reports its own CPU time so a
benchmark can show that the client was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LENGTH = struct.Struct(">I")
#: How many of the slowest requests the results list (when they were scheduled): a
#: tail made of one stall shows as neighbours in time, a saturated service does not.
SLOWEST = 20


def write_requests(path: Path, requests: Iterable[bytes]) -> int:
    """Write requests in the format the load generator reads; return how many."""
    count = 0
    with path.open("wb") as out:
        for request in requests:
            out.write(_LENGTH.pack(len(request)))
            out.write(request)
            count += 1
    return count


def read_requests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    requests: list[bytes] = []
    at = 0
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        requests.append(data[at : at + size])
        at += size
    return requests


def http_request(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 request's bytes, with Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: ingest", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Spec:
    host: str
    port: int
    requests: str
    rate: float
    duration_s: float
    warmup_s: float = 0.0
    connections: int = 64
    drain_s: float = 10.0
    count_containing: str | None = None


@dataclass
class Results:
    """What happened to the measured requests (those scheduled after the warm-up)."""

    measured_from: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    containing: int = 0
    last_done: float = 0.0
    slowest: list[tuple[float, int]] = field(default_factory=list)  # (latency ms, index)


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self, client: LoadGenerator) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: tuple[int, float] | None = None  # (index, scheduled time)
        self.expected = -1  # bytes of the whole response, once its headers are in
        self.status = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, index: int, scheduled: float) -> None:
        assert self.transport is not None and self.current is None
        self.current = (index, scheduled)
        self.transport.write(self.client.requests[index])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 2]).lower()  # every header line ends in CRLF
            self.status = head[9:12].decode()
            at = head.find(b"\r\ncontent-length:")
            length = int(head[at + 17 : head.find(b"\r\n", at + 2)]) if at >= 0 else 0
            self.expected = end + 4 + length
        if len(self.buffer) < self.expected:
            return
        body = bytes(self.buffer[self.buffer.find(b"\r\n\r\n") + 4 : self.expected])
        del self.buffer[: self.expected]
        self.expected = -1
        current, self.current = self.current, None
        if current is not None:
            self.client.completed(self, current, self.status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        current, self.current = self.current, None
        self.client.lost(self, current)


class LoadGenerator:
    def __init__(self, spec: Spec, requests: list[bytes]) -> None:
        self.spec = spec
        self.requests = requests
        self.loop = asyncio.get_running_loop()
        self.idle: deque[Connection] = deque()
        self.pending: deque[tuple[int, float]] = deque()
        self.outstanding = 0
        self.max_waiting = 0  # requests queued for a free connection, at most
        self.max_send_lag = 0.0  # how late the scheduler dispatched a request, at most
        self.scheduled_all = False
        self.stopping = False
        self.connections: list[Connection] = []
        self.finished = asyncio.Event()
        self.results = Results(measured_from=math.ceil(spec.warmup_s * spec.rate))

    async def connect(self) -> None:
        _, protocol = await self.loop.create_connection(
            lambda: Connection(self), self.spec.host, self.spec.port
        )
        self.connections.append(protocol)
        self.ready(protocol)

    def ready(self, conn: Connection) -> None:
        """A connection is free: give it the oldest waiting request, or park it."""
        if self.pending:
            conn.send(*self.pending.popleft())
        else:
            self.idle.append(conn)

    def dispatch(self, index: int, scheduled: float, now: float) -> None:
        self.outstanding += 1
        if index >= self.results.measured_from:
            self.max_send_lag = max(self.max_send_lag, now - scheduled)
        if self.idle:
            self.idle.popleft().send(index, scheduled)
        else:
            self.pending.append((index, scheduled))
            self.max_waiting = max(self.max_waiting, len(self.pending))

    def done(self, index: int, status: str, latency_s: float, body: bytes) -> None:
        results = self.results
        if index >= results.measured_from:
            results.statuses[status] += 1
            results.latencies_ms.append(latency_s * 1000)
            results.slowest.append((latency_s * 1000, index))
            if len(results.slowest) > 2 * SLOWEST:
                results.slowest = sorted(results.slowest, reverse=True)[:SLOWEST]
            results.last_done = max(results.last_done, self.loop.time())
            marker = self.spec.count_containing
            if marker is not None and marker.encode() in body:
                results.containing += 1
        self.outstanding -= 1
        if self.outstanding == 0 and self.scheduled_all:
            self.finished.set()

    def completed(
        self, conn: Connection, current: tuple[int, float], status: str, body: bytes
    ) -> None:
        index, scheduled = current
        self.done(index, status, self.loop.time() - scheduled, body)
        self.ready(conn)

    def lost(self, conn: Connection, current: tuple[int, float] | None) -> None:
        """The server closed a connection: count its request, open a replacement."""
        if conn in self.idle:
            self.idle.remove(conn)
        if current is not None:
            index, scheduled = current
            self.done(index, "disconnected", self.loop.time() - scheduled, b"")
        if not self.stopping:
            self.loop.create_task(self.connect())

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        total = math.ceil((spec.warmup_s + spec.duration_s) * spec.rate)
        if total > len(self.requests):
            raise SystemExit(f"{total} requests needed, the file has {len(self.requests)}")
        await asyncio.gather(*(self.connect() for _ in range(spec.connections)))
        interval = 1.0 / spec.rate
        start = self.loop.time() + 0.05
        measured_start = start + self.results.measured_from * interval
        cpu_began = wall_began = 0.0
        index = 0
        while index < total:
            now = self.loop.time()
            while index < total and start + index * interval <= now:
                if index == self.results.measured_from:
                    cpu_began, wall_began = time.process_time(), now
                self.dispatch(index, start + index * interval, now)
                index += 1
            if index < total:
                await asyncio.sleep(start + index * interval - self.loop.time())
        self.scheduled_all = True
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), spec.drain_s)
        cpu_s = time.process_time() - cpu_began
        wall_s = self.loop.time() - wall_began
        self.stopping = True
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()
        results = self.results
        measured = total - results.measured_from
        unanswered = measured - len(results.latencies_ms)
        if unanswered:
            results.statuses["unanswered"] += unanswered
        ok = results.statuses.get("200", 0)
        window = max(results.last_done - measured_start, 1e-9)
        return {
            "measured": measured,
            "latencies_ms": results.latencies_ms,
            "statuses": dict(results.statuses),
            "errors": measured - ok,
            "achieved_rps": ok / window,
            "containing": results.containing,
            "client_cpu_s": cpu_s,
            "client_wall_s": wall_s,
            "max_waiting_for_connection": self.max_waiting,
            "max_send_lag_ms": self.max_send_lag * 1000,
            # CLOCK_MONOTONIC is system-wide: other processes' events can be placed on it.
            "measured_from_monotonic": measured_start,
            "slowest": [
                {"at_s": round(index * interval - spec.warmup_s, 3), "ms": round(ms, 1)}
                for ms, index in sorted(results.slowest, reverse=True)[:SLOWEST]
            ],
        }


async def _main() -> None:
    raw = json.loads(sys.stdin.read())
    spec = Spec(**raw)
    requests = read_requests(Path(spec.requests))
    generator = LoadGenerator(spec, requests)
    results = await generator.run()
    sys.stdout.write(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(_main())
