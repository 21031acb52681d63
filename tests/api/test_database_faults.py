"""The database failing under the API, by cause: a hung server (SIGSTOP) is
unavailable (503 + Retry-After, within `api_query_timeout_seconds`); a value the database
refuses is the client's 400 naming the field; any other refusal is a 500 with an error id
that is also in the log."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store, embedded, migrate
from kirby_core.db.urls import with_database
from tests.api.conftest import BTC_1M, ApiFactory, Served, bearer
from tests.conftest import REPO

TIMEOUT = 2.0
"""api_query_timeout_seconds in these tests."""
SLACK = 5.0
"""Allowed on top of TIMEOUT: scheduling on a busy machine, never the length of the stall."""


@pytest.fixture(scope="module")
def throwaway_url() -> Iterator[str]:
    """A PostgreSQL of its own (migrated, catalog synced), so freezing it stalls no other test."""
    home = Path(tempfile.mkdtemp(prefix="kirby-frozen-"))
    try:
        url = with_database(embedded.start(home, databases=("kirby",)), "kirby")
        migrate.upgrade(url)

        async def sync() -> None:
            conn = await asyncpg.connect(url)
            try:
                catalog = load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
                await catalog_store.sync_catalog(conn, catalog)
            finally:
                await conn.close()

        asyncio.run(sync())
        yield url
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def _server_processes(url: str) -> list[int]:
    """The postmaster of the embedded server at `url` and its children (the backends)."""
    pgdata = Path(parse_qs(urlsplit(url).query)["host"][0])  # the socket lives in the data dir
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


@contextmanager
def frozen(url: str) -> Iterator[None]:
    """PostgreSQL stopped dead (SIGSTOP): connections open, nothing answers. Resumed after."""
    pids = _server_processes(url)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def _timed(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - started


async def test_a_frozen_database_answers_503_within_the_timeout(
    served: Served, throwaway_url: str
) -> None:
    overrides = {"database_url": throwaway_url, "api_query_timeout_seconds": TIMEOUT}
    async with (
        served(**overrides, api_pool_size=2) as base,
        httpx.AsyncClient(base_url=f"http://{base}", timeout=60) as client,
    ):
        assert (await client.get(BTC_1M)).status_code == 200  # the pool holds a connection
        with frozen(throwaway_url):
            # more requests than connections (distinct windows: no shared cached read), so
            # some wait on a query, some on a new connection, some on the pool
            windows = [f"{BTC_1M}?start_time=2024-05-01T00:0{m}:00Z" for m in range(5)]
            answers = await asyncio.gather(
                *(_timed(client, path) for path in windows), _timed(client, "/health")
            )
            for response, seconds in answers:
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "5"
                assert seconds < TIMEOUT + SLACK
            health = answers[-1][0].json()
            assert health["status"] == "down"
            assert "did not answer in time" in health["database"]["error"]
            body = answers[0][0].json()
            assert body["error"] == "unavailable" and "retry shortly" in body["message"]
        # the connections that timed out were dropped: the pool serves again at once
        response, _ = await _timed(client, BTC_1M)
        assert response.status_code == 200
        assert (await client.get("/health")).json()["database"]["status"] == "ok"


async def test_a_value_the_database_refuses_is_a_400_naming_the_field(
    api: ApiFactory, admin_token: str
) -> None:
    async with api() as client:
        response = await client.post(
            "/admin/api-keys",
            json={"name": "far future", "expires_at": "9999-12-31T23:00:00-05:00"},
            headers=bearer(admin_token),
        )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_parameter" and body["parameter"] == "expires_at"
    assert body["message"] == "invalid expires_at: date value out of range"


async def test_any_other_refusal_is_a_500_with_an_error_id_in_the_log(
    api: ApiFactory, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # a schema the code does not expect: nothing the client can fix
    await conn.execute("ALTER TABLE api_keys RENAME COLUMN request_count TO renamed")
    try:
        async with api(api_auth_enabled=False) as client:
            with caplog.at_level(logging.ERROR, "kirby_api.errors"):
                response = await client.get("/admin/api-keys")
    finally:
        await conn.execute("ALTER TABLE api_keys RENAME COLUMN renamed TO request_count")
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["error"] == "internal_error" and "request_count" not in body["message"]
    assert body["error_id"] in body["message"]
    logged = [r for r in caplog.records if f"error_id={body['error_id']}" in r.getMessage()]
    assert len(logged) == 1 and "request_count" in logged[0].getMessage()
