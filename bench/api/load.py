"""A small HTTP/1.1 load generator: keep-alive connections, bounded loops, latency samples.

Deliberately minimal (asyncio streams, Content-Length bodies read but not parsed) so the
client spends far less CPU per request than the servers it measures; on a 2-core machine
that still matters, so the figures are a floor for what the servers can do.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    bytes: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """In ms."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.rate:>8.1f} req/s  p50 {self.percentile(50):>7.2f} ms  "
            f"p99 {self.percentile(99):>7.2f} ms  ({self.requests} requests, "
            f"{self.bytes / max(self.requests, 1) / 1024:.0f} KiB each, {self.errors} errors)"
        )


class Connection:
    def __init__(
        self, host: str, port: int, headers: dict[str, str], tls: ssl.SSLContext | None = None
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body bytes)."""
        status, body = await self._request(path, keep=False)
        return status, len(body) if isinstance(body, bytes) else body

    async def body(self, path: str) -> bytes:
        """The body of a 200 answer (raises on any other status)."""
        status, body = await self._request(path, keep=True)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        assert isinstance(body, bytes)
        return body

    async def _request(self, path: str, keep: bool) -> tuple[int, int | bytes]:
        """(status, the body if `keep` else its length)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self._host, self._port, limit=2**24, ssl=self._tls
            )
        assert self._reader is not None
        self._writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\n{self._extra}\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
        parts: list[bytes] = []
        if chunked:
            length = 0
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self._reader.readexactly(size + 2)
                if keep:
                    parts.append(chunk[:-2])
                length += size
                if size == 0:
                    break
        else:
            parts.append(await self._reader.readexactly(length))
        return status, b"".join(parts) if keep else length

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


async def run(
    host: str,
    port: int,
    next_path: Callable[[], str],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Result:
    """`concurrency` workers, each one request at a time, until either bound is reached."""
    latencies: list[float] = []
    errors = 0
    received = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    issued = 0

    async def worker() -> None:
        nonlocal errors, received, issued
        connection = Connection(host, port, headers or {}, tls)
        try:
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                path = next_path()
                t0 = time.perf_counter()
                status, size = await connection.get(path)
                latencies.append(time.perf_counter() - t0)
                received += size
                if status != 200:
                    errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(len(latencies), time.perf_counter() - started, latencies, errors, received)


def summary(values: list[float]) -> str:
    """p50 / p99 / mean of durations in seconds, printed in ms."""
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000

    return f"p50 {at(50):.2f} ms  p99 {at(99):.2f} ms  mean {statistics.mean(values) * 1000:.2f} ms"
