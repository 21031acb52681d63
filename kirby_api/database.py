"""The API's connection pool to the realtime database, and the boundary for its errors.

The pool is opened in the app's lifespan and injected into whatever reads. Every query goes
through `fetch`/`fetchrow`/`fetchval`/`execute` or `connection()` here, which bound it and
translate driver and network failures (`kirby_core.db.errors`): `StorageUnavailable` (503
with Retry-After) or `StorageRefused` (400 naming the field when the input is at fault, else
500), so no handler ever sees an asyncpg exception.

Each HTTP request has one database deadline (`RequestDeadline`): its first database wait
starts `api_query_timeout_seconds`, and every wait of the request, pool acquire included,
ends by then; outside a request (WebSocket, background work) each wait gets the whole
timeout. A connection whose work timed out, was cancelled or lost the server is closed, not
returned to the pool: its state is unknown, and a hung server would hang the next user too.
asyncpg prepares and caches each statement per connection, so the hot queries are planned
once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, cast

import asyncpg
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from kirby_core.db.connection import server_settings
from kirby_core.db.errors import DRIVER_ERRORS, storage_error
from kirby_core.errors import StorageUnavailable
from kirby_core.settings import Settings

log = logging.getLogger(__name__)

RELEASE_SECONDS = 0.5
"""Least time a healthy connection gets to reset on its way back into the pool (past the
deadline too); asyncpg closes it if that runs out."""

_DEADLINE: ContextVar[list[float] | None] = ContextVar("kirby_database_deadline", default=None)
"""The current request's deadline (monotonic), once its first database wait has set it."""


class RequestDeadline(ASGIMiddleware):
    """Gives every HTTP request one database deadline, shared by all its waits."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = _DEADLINE.set([])
        try:
            await next_app(scope, receive, send)
        finally:
            _DEADLINE.reset(token)


class ConnectionPool:
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
                # A generic plan of a hot read on a hypertable starts every chunk and
                # excludes them at run time (10 ms with 366 chunks); a custom plan prunes
                # them at plan time by the read's time bound (`kirby_api.market_data`).
                server_settings={
                    **server_settings("kirby_api"),
                    "plan_cache_mode": "force_custom_plan",
                },
            )
        except DRIVER_ERRORS as exc:
            raise storage_error(exc, "could not connect to the realtime database") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailable("the database pool is not open")
        return self._pool

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            return await conn.execute(query, *args)

    @asynccontextmanager
    async def connection(self, seconds: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for several statements. Acquiring it and the whole block end
        by the request's deadline, or within `seconds` for work with a budget of its own (a
        bulk export); errors are translated as above."""
        budget = self._remaining() if seconds is None else seconds
        pool = self.pool
        conn: asyncpg.pool.PoolConnectionProxy | None = None
        healthy = False
        try:
            if budget <= 0:
                raise TimeoutError
            async with asyncio.timeout(budget):
                conn = await pool.acquire()
                # the pool's proxy forwards every Connection method to its connection
                yield cast(asyncpg.Connection, conn)
            healthy = True
        except DRIVER_ERRORS as exc:
            error = storage_error(exc)
            healthy = not isinstance(error, StorageUnavailable)
            if not healthy:
                log.warning("database unavailable error=%s detail=%r", type(exc).__name__, str(exc))
                error.args = (f"{error}; retry shortly",)
            raise error from exc
        except Exception:
            healthy = True  # the caller's own error, between statements
            raise
        finally:
            if conn is not None:
                if not healthy:  # timed out, cancelled or server gone: state unknown
                    conn.terminate()
                await pool.release(conn, timeout=max(self._remaining(), RELEASE_SECONDS))

    def _remaining(self) -> float:
        """Seconds left for a database wait: what is left of the request's deadline, or the
        whole timeout outside a request."""
        deadline = _DEADLINE.get()
        if deadline is None:
            return self._timeout
        if not deadline:
            deadline.append(time.monotonic() + self._timeout)
        return deadline[0] - time.monotonic()
