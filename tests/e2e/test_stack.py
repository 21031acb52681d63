"""The whole platform as `kirby demo` starts it, end to end, then stopped leaving nothing.

The stack is `kirby_cli.stack.Stack`, the code `kirby demo` runs: the simulator, the API,
the Dagster webserver and daemon as real subprocesses on free ports, in a temporary home.
Its databases are its own embedded PostgreSQL in that home, as in the demo (that start-up
is part of what is tested); with `KIRBY_TEST_DATABASE_URL` set, fresh databases on that
server instead (realtime, training and Dagster's), which exercises the external-URL path
of `kirby run`. The catalog is the default, five-exchange one: the backfill is one day of
candles (one run per exchange), the stream run collects all five; the lake export is left
to the demo (tests/pipelines covers it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import psutil
import pytest
from websockets.sync.client import connect

from kirby_cli.stack import Stack, StackConfig, simulated
from kirby_core.db.urls import plain_url, with_database
from kirby_core.settings import Settings
from tests.conftest import REPO, _run

SERVER_URL = os.environ.get("KIRBY_TEST_DATABASE_URL")
SERIES = "hyperliquid/BTC/USD/perps/1m"
T = TypeVar("T")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, check: Callable[[], T | None], timeout: float, poll: float = 2.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


@pytest.fixture
def home() -> Iterator[Path]:
    """Outside pytest's tmp tree, which another pytest process may prune meanwhile."""
    path = Path(tempfile.mkdtemp(prefix="kirby-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def database_urls() -> Iterator[dict[str, str | None]]:
    """None (the stack's own embedded server) or fresh databases on the test server."""
    if not SERVER_URL:
        yield {}
        return
    server = plain_url(SERVER_URL)
    suffix = uuid.uuid4().hex[:8]
    names = {
        "database_url": f"kirby_e2e_{suffix}",
        "training_database_url": f"kirby_training_e2e_{suffix}",
        "dagster_database_url": f"kirby_dagster_e2e_{suffix}",
    }
    admin = with_database(server, "postgres")
    asyncio.run(_run(admin, *(f'CREATE DATABASE "{n}"' for n in names.values())))
    yield {field: with_database(server, name) for field, name in names.items()}
    asyncio.run(_run(admin, *(f'DROP DATABASE "{n}" WITH (FORCE)' for n in names.values())))


@pytest.fixture
def stack(home: Path, database_urls: dict[str, str | None]) -> Iterator[Stack]:
    sim_port = free_port()
    settings = Settings(
        _env_file=None,
        home=home,
        lake_dir=home / "lake",
        realtime_catalog=REPO / "config" / "starlistings.yaml",
        training_catalog=REPO / "config" / "training_stars.yaml",
        **database_urls,
    )
    config = StackConfig(
        settings=simulated(settings, sim_port),
        dagster_port=free_port(),
        api_port=free_port(),
        sim_port=sim_port,
        history_assets=("candles",),
        export_lake=False,
        owns_postgres=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIRBY_", "DAGSTER_"))}
    running = Stack(config)
    try:
        running.start(env)
        yield running
    finally:
        running.stop()


def test_the_stack_backfills_streams_serves_and_stops_leaving_nothing(
    stack: Stack, home: Path
) -> None:
    assert stack.backfills is not None and stack.databases is not None and stack.api_key
    headers = {"X-API-Key": stack.api_key}
    api = stack.config.api_url
    star = next(s for s in stack.series[0].starlistings if str(s.key) == SERIES)

    # the backfill launched through GraphQL completes (bounded by the daemon's 30 s loop)
    def backfill_done() -> bool:
        stack.check_children()
        stack.backfills.step()
        return stack.backfills.done()

    wait_for("the candles backfills", backfill_done, timeout=420)
    assert set(stack.backfills.status.values()) == {"COMPLETED_SUCCESS"}

    # the supervisor sensor launched the stream run through the daemon; it writes candles
    stream_runs = stack.dagster.unfinished_runs("stream")
    assert [r["status"] for r in stream_runs] == ["STARTED"]
    collector = f"dagster-{stream_runs[0]['runId']}"
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    async def live_rows() -> int:
        conn = await asyncpg.connect(stack.databases.realtime)
        try:
            beat = await conn.fetchval(
                "SELECT count(*) FROM stream_heartbeats WHERE collector_id = $1", collector
            )
            rows = await conn.fetchval(
                "SELECT count(*) FROM candles WHERE starlisting_id = $1 AND time >= $2",
                star.id,
                today,
            )
        finally:
            await conn.close()
        return rows if beat else 0

    wait_for("live candles from the stream run", lambda: asyncio.run(live_rows()), timeout=120)

    # one collector, five exchanges: each has live candles and its state in the heartbeat
    async def live_exchanges() -> set[str]:
        conn = await asyncpg.connect(stack.databases.realtime)
        try:
            rows = await conn.fetch(
                """SELECT DISTINCT e.name FROM candles c
                   JOIN starlistings s ON s.id = c.starlisting_id
                   JOIN exchanges e ON e.id = s.exchange_id WHERE c.time >= $1""",
                today,
            )
            feeds = await conn.fetchval(
                "SELECT feeds FROM stream_heartbeats WHERE collector_id = $1", collector
            )
        finally:
            await conn.close()
        running = {name for name, feed in json.loads(feeds or "{}").items()}
        return {r["name"] for r in rows} & running

    five = {"hyperliquid", "binance", "bybit", "okx", "coinbase"}
    wait_for(
        "live candles of all five exchanges",
        lambda: asyncio.run(live_exchanges()) == five,
        timeout=120,
    )

    # the API serves the backfilled history and the live rows
    yesterday = today - timedelta(days=1)
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        history = client.get(
            f"/candles/{SERIES}", params={"start_time": yesterday.isoformat(), "limit": 5}
        )
        assert history.status_code == 200, history.text
        assert history.json()["data"][0]["time"].startswith(yesterday.date().isoformat())
        latest = client.get(f"/candles/{SERIES}", params={"limit": 1})
        assert latest.status_code == 200, latest.text
        assert latest.json()["data"][-1]["time"] >= today.strftime("%Y-%m-%dT%H:%M:%SZ")

    # a WebSocket subscriber receives a live candle
    ws_url = f"ws://127.0.0.1:{stack.config.api_port}/ws?api_key={stack.api_key}"
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"action": "subscribe", "starlisting_ids": [star.id]}))
        deadline = time.monotonic() + 60
        live = None
        while live is None and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["type"] == "candle":
                live = message
    assert live is not None, "no live candle on the WebSocket within 60 s"
    assert live["starlisting_id"] == star.id and live["data"]["time"] >= today.isoformat()[:10]

    # stopping leaves no process behind: children, Dagster's run workers, PostgreSQL
    started = {c.pid for c in stack.children} | {p for c in stack.children for p in c.descendants}
    assert len(started) > len(stack.children)  # Dagster's code servers and the stream run
    stack.stop()
    assert stack.leftovers() == []
    ours = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert ours == []
    mine = [p for p in psutil.Process().children(recursive=True) if p.status() != "zombie"]
    assert mine == []
