"""The API's connection pool to the realtime database, and the boundary for its errors.

The pool is opened in the app's lifespan and injected into whatever reads. Every query goes
through `fetch`/`fetchrow`/`execute` here, which put a timeout on it and translate driver
and network failures into `StorageError` (503), so no handler ever sees an asyncpg
exception. asyncpg prepares and caches each statement per connection, so the hot queries
are planned once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from kirby_core.errors import StorageError
from kirby_core.settings import Settings

log = logging.getLogger(__name__)

_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Database:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self._size = settings.api_pool_size
        self._timeout = settings.api_query_timeout_seconds
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._size,
                timeout=self._timeout,
                server_settings={"application_name": "kirby_api"},
            )
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"could not connect to the realtime database: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("the database pool is not open")
        return self._pool

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self.pool.fetch(query, *args, timeout=self._timeout)
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self.pool.fetchrow(query, *args, timeout=self._timeout)
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    async def fetchval(self, query: str, *args: Any) -> Any:
        try:
            return await self.pool.fetchval(query, *args, timeout=self._timeout)
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    async def execute(self, query: str, *args: Any) -> str:
        try:
            return await self.pool.execute(query, *args, timeout=self._timeout)
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for several statements (errors translated as above)."""
        try:
            async with self.pool.acquire(timeout=self._timeout) as conn:
                yield conn
        except _DRIVER_ERRORS as exc:
            raise _storage_error(exc) from exc


def _storage_error(exc: BaseException) -> StorageError:
    """The client learns that storage failed; the log keeps what the driver said."""
    log.warning("database error error=%s detail=%r", type(exc).__name__, str(exc))
    if isinstance(exc, TimeoutError):
        return StorageError("the database did not answer in time; retry shortly")
    return StorageError("the database is unavailable; retry shortly")
