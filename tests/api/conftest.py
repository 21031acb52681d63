"""API test harness: the real app on the real test database, driven by Litestar's clients.

`AsyncTestClient` runs the app (lifespan, pool, LISTEN connection, handlers) on its own
event loop in a portal thread; tests write rows and send NOTIFYs through the `conn`
fixture on theirs, exactly as the stream would. `api(...)` builds a client with settings
overrides; keys are created through `kirby_api.keys` like `kirby apikey create` does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from kirby_api import create_app
from kirby_api.keys import create_key
from kirby_core.db import notify
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow
from kirby_core.settings import Settings
from tests.db.conftest import catalog  # noqa: F401  (the synced realtime catalog)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
BTC_1M = "/candles/hyperliquid/BTC/USD/perps/1m"

ApiFactory = Callable[..., AbstractAsyncContextManager[AsyncTestClient]]


def candle_rows(starlisting_id: int, minutes: range, start: datetime = T0) -> list[CandleRow]:
    """Minute m: open 100+m, high 101.50+m (trailing zero kept), low 99+m, close 100.25+m."""
    return [
        CandleRow(
            starlisting_id,
            start + timedelta(minutes=m),
            Decimal(100 + m),
            Decimal(f"{101 + m}.50"),
            Decimal(99 + m),
            Decimal(f"{100 + m}.25"),
            Decimal("0.00012345"),
            m,
        )
        for m in minutes
    ]


def candle_json(m: int, start: datetime = T0) -> dict[str, Any]:
    """What the API returns for minute m of `candle_rows`."""
    return {
        "time": (start + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "open": str(100 + m),
        "high": f"{101 + m}.50",
        "low": str(99 + m),
        "close": f"{100 + m}.25",
        "volume": "0.00012345",
        "num_trades": m,
    }


async def write_candles(
    conn: asyncpg.Connection,
    starlisting_id: int,
    minutes: range,
    *,
    announce: bool = False,
    start: datetime = T0,
) -> None:
    """Write `candle_rows` with the writer; `announce`: NOTIFY like the stream does."""
    rows = candle_rows(starlisting_id, minutes, start)
    async with conn.transaction():
        await upsert_candles(conn, rows)
        if announce:
            await notify.notify(conn, "candles", {starlisting_id: [r.time for r in rows]})


def api_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={"api_catalog_refresh_seconds": 3600, **overrides})


@pytest.fixture
def api(settings: Settings, catalog: dict[str, int]) -> ApiFactory:  # noqa: F811
    """`async with api(**settings_overrides) as client:` a running app and its client."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[AsyncTestClient]:
        app = create_app(api_settings(settings, **overrides))
        async with AsyncTestClient(app=app, timeout=10) as client:
            yield client

    return start


@pytest.fixture
async def client(api: ApiFactory) -> AsyncIterator[AsyncTestClient]:
    """A client of an app with authentication off."""
    async with api(api_auth_enabled=False) as running:
        yield running


@pytest.fixture
async def admin_token(conn: asyncpg.Connection) -> str:
    return (await create_key(conn, "test admin", admin=True))[1]


@pytest.fixture
async def user_token(conn: asyncpg.Connection) -> str:
    return (await create_key(conn, "test user"))[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def runtime(client: AsyncTestClient):
    """The app's services, to call on the app's own loop via `client.blocking_portal`."""
    return client.app.state.runtime


Served = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def served(settings: Settings, catalog: dict[str, int]) -> Served:  # noqa: F811
    """`async with served(**overrides) as base:` the app under uvicorn; base = host:port.

    Authentication is off unless an override turns it on. The listening socket is bound
    before the server starts, so clients can connect at once (the kernel queues them until
    uvicorn accepts): no waiting for startup.
    """

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        app = create_app(api_settings(settings, **{"api_auth_enabled": False, **overrides}))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        config = uvicorn.Config(
            app, log_config=None, access_log=False, ws_per_message_deflate=False
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield f"127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            await task
            sock.close()

    return start
