"""The collector's one PostgreSQL connection, shared in turn by flushes, heartbeats and
catalog polls.

`SharedConnection.run(operation)` runs one operation under a lock and a timeout, connecting
first if needed. A failure to reach the server (refused, reset, timed out, server gone) closes the
connection and raises `StorageUnavailable`, so the next call starts from a fresh one;
retrying is the caller's policy (flushes back off and keep their rows, a heartbeat skips a
beat). A statement the server refuses (bad data, constraint, schema) raises `StorageRefused`
and keeps the connection (its transaction was rolled back): retrying it cannot help. One
connection is enough: the work is a handful of short statements per second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from kirby_core.db.connection import connect
from kirby_core.db.errors import DRIVER_ERRORS, storage_error
from kirby_core.db.urls import redact
from kirby_core.errors import StorageRefused, StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class SharedConnection:
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
                    return await operation(await self._connection())
            except DRIVER_ERRORS as exc:
                error = storage_error(exc, f"database {redact(self.url)}")
                if isinstance(error, StorageUnavailable):
                    self._discard()
                raise error from exc

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            try:
                self._conn = await connect(self.url, application_name="kirby_stream")
            except StorageRefused as exc:  # a wrong password or database: no row is at fault
                raise StorageUnavailable(str(exc)) from exc
        return self._conn

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                try:
                    async with asyncio.timeout(self.timeout):
                        await self._conn.close()
                except DRIVER_ERRORS:
                    self._conn.terminate()
                self._conn = None

    def _discard(self) -> None:
        """Drop a connection in an unknown state without waiting on the network."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
