"""The collector's one PostgreSQL connection, shared in turn by flushes, heartbeats and
catalog polls.

`Database.run(operation)` runs one operation under a lock and a timeout, connecting first if
needed. Any failure to reach or use the server (refused, reset, timed out, server error)
closes the connection and raises `StorageError`, so the next call starts from a fresh one;
retrying is the caller's policy (flushes back off and keep their rows, a heartbeat skips a
beat). One connection is enough: the work is a handful of short statements per second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from kirby_core.db.urls import redact
from kirby_core.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Database:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def run(
        self,
        operation: Callable[[asyncpg.Connection], Awaitable[T]],
        within: float | None = None,
    ) -> T:
        """`operation(connection)`, given `within` seconds (default: the configured timeout)."""
        async with self._lock:
            try:
                async with asyncio.timeout(within or self.timeout):
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await asyncpg.connect(self.url)
                    return await operation(self._conn)
            except _UNREACHABLE as exc:
                self._discard()
                reason = str(exc) or type(exc).__name__
                raise StorageError(f"database {redact(self.url)}: {reason}") from exc

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                try:
                    async with asyncio.timeout(self.timeout):
                        await self._conn.close()
                except _UNREACHABLE:
                    self._conn.terminate()
                self._conn = None

    def _discard(self) -> None:
        """Drop a connection in an unknown state without waiting on the network."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
