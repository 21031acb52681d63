"""`kirby stream` as a real process: SIGTERM makes it stop reading, flush everything it holds
(open minutes included) and exit cleanly within a few seconds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg

from kirby_core.db.urls import DatabaseUrls
from kirby_sim import SimulatorServer
from tests.stream.helpers import KIRBY_STREAM


def stream_environment(database_url: str, ws_url: str, home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIRBY_")}
    return {
        **env,
        "KIRBY_DATABASE_URL": database_url,
        "KIRBY_HYPERLIQUID_WS_URL": ws_url,
        "KIRBY_HOME": str(home),
        "KIRBY_STREAM_HEARTBEAT_SECONDS": "0.3",
        **extra,
    }


async def start_kirby_stream(env: dict) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", KIRBY_STREAM, "stream", env=env, stderr=asyncio.subprocess.PIPE
    )


async def wait_for(condition, within: float = 20.0):
    deadline = time.monotonic() + within
    while not (value := await condition()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return value


async def test_sigterm_flushes_everything_and_exits_cleanly(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    database_urls: DatabaseUrls,
    tmp_path: Path,
) -> None:
    # flushes every 60 s: within this test, only the shutdown can write candles
    env = stream_environment(
        database_urls.realtime, sim.ws_url, tmp_path, KIRBY_STREAM_FLUSH_SECONDS="60"
    )
    process = await start_kirby_stream(env)

    async def collecting() -> bool:
        assert process.returncode is None, (await process.stderr.read()).decode()
        return bool(
            await conn.fetchval(
                "SELECT messages_received > 200 FROM stream_heartbeats WHERE pid = $1",
                process.pid,
            )
        )

    await wait_for(collecting)
    assert await conn.fetchval("SELECT count(*) FROM candles") == 0

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await asyncio.wait_for(process.wait(), 10)
    took = time.monotonic() - signalled
    log = (await process.stderr.read()).decode()

    assert process.returncode == 0, log
    assert took < 5, log
    assert "event=collector_stopped" in log
    assert sim.state()["connections"] == 0
    # every starlisting's latest candle, and the minute that was still open, got written
    assert await conn.fetchval("SELECT count(DISTINCT starlisting_id) FROM candles") == 8
    open_minute = await conn.fetchval("SELECT max(time) FROM funding_rates")
    assert (
        await conn.fetchval("SELECT count(*) FROM open_interest WHERE time = $1", open_minute) == 2
    )
    beat = await conn.fetchrow("SELECT * FROM stream_heartbeats WHERE pid = $1", process.pid)
    written = json.loads(beat["rows_written"])
    assert written["candles"] >= 8 and written["funding_rates"] >= 2
    assert json.loads(beat["buffer_sizes"])["candles"] == 0
    assert await conn.fetchval("SELECT count(*) FROM collection_outages") == 0
