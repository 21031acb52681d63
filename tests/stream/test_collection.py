"""The collector against the simulator and a real PostgreSQL: what it writes is what was sent.

Candles must end up equal to what the exchange serves for them afterwards (candleSnapshot),
every field; funding and open interest must hold, per minute, the last asset context
received in that minute; every flush must be announced by NOTIFY; the heartbeat must tell
the truth about all of it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta

import asyncpg
from websockets.asyncio.client import connect

from kirby_core.db import notify
from kirby_core.db.urls import DatabaseUrls
from kirby_core.exchanges.hyperliquid_wire import (
    asset_context_subscription,
    parse_ws_message,
    subscribe_frame,
)
from kirby_core.models import AssetContextUpdate
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_sim import SimulatorServer
from tests.stream.conftest import START
from tests.stream.helpers import candle_snapshot, collecting, minutes

RECEIPT_TOLERANCE = timedelta(milliseconds=600)
"""Two clients of one feed stamp a push a few real ms apart: at 60x, up to ~0.5 s simulated.
A push that close to a minute boundary may fall in either minute."""


async def record_contexts(sim: SimulatorServer, coins: list[str], into: list) -> None:
    """A second client of the feed: every asset context with its simulated arrival time."""
    async with connect(sim.ws_url, ping_interval=None) as ws:
        for coin in coins:
            await ws.send(subscribe_frame(asset_context_subscription(coin)))
        async for text in ws:
            if text.startswith('{"channel":"activeAssetCtx"'):
                into.append(parse_ws_message(text, sim.clock.now()))


async def test_rows_equal_what_the_feed_sent(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    contexts: list[AssetContextUpdate] = []
    notified: Counter[tuple[str, int, datetime]] = Counter()

    def on_notify(_conn: object, _pid: int, channel: str, payload: str) -> None:
        for series, times in notify.decode_notification(channel, payload).changes.items():
            notified.update((channel, series, t) for t in times)

    listener = await asyncpg.connect(database_urls.realtime)
    for channel in notify.NOTIFY_CHANNELS.values():
        await listener.add_listener(channel, on_notify)
    recorder = asyncio.create_task(record_contexts(sim, ["BTC", "SOL"], contexts))
    try:
        async with collecting(stream_settings, database_urls.realtime, sim) as running:
            # the 15m candle of 12:00 closes at 12:15 (2.5 simulated minutes in); run past it
            await running.until(lambda: sim.clock.now() >= START + timedelta(minutes=5))
            stopping_at = sim.clock.now()
        stopped_at = sim.clock.now()
    finally:
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
        await listener.close()

    # candles: every minute that closed a while before the stop is final, field by field
    closed_before = floor_minute(stopped_at) - timedelta(minutes=1)
    fifteen = START.replace(minute=0, second=0)
    for coin in ("BTC", "SOL"):
        for interval, first, end in (
            ("1m", floor_minute(START), closed_before),
            ("15m", fifteen, fifteen + timedelta(minutes=15)),
        ):
            served = await candle_snapshot(sim, coin, interval, first, end)
            stored = await conn.fetch(
                "SELECT * FROM candles WHERE starlisting_id = $1 AND time >= $2 AND time < $3",
                catalog[f"{coin}/{interval}"],
                first,
                end,
            )
            assert {r["time"]: tuple(r)[2:] for r in stored} == {
                t: v for t, v in served.items() if t < end
            }, (coin, interval)
            assert stored, (coin, interval)
        # the 4h and 1d candles are still forming: present, with the state seen so far
        for interval in ("4h", "1d"):
            row = await conn.fetchrow(
                "SELECT * FROM candles WHERE starlisting_id = $1", catalog[f"{coin}/{interval}"]
            )
            assert row is not None and row["trade_count"] > 0

    # a forming candle is written again and again, not only once final
    updates = [n for (channel, _, _), n in notified.items() if channel == "kirby_candles"]
    assert max(updates) > 3

    # funding and OI: one row per pair per minute, the last context received in that minute
    for coin in ("BTC", "SOL"):
        pair = catalog[coin]
        funding = {
            r["time"]: r
            for r in await conn.fetch(
                "SELECT * FROM funding_rates WHERE trading_pair_id = $1 ORDER BY time", pair
            )
        }
        interest = {
            r["time"]: r
            for r in await conn.fetch(
                "SELECT * FROM open_interest WHERE trading_pair_id = $1 ORDER BY time", pair
            )
        }
        assert list(funding) == list(interest)
        assert list(funding) == minutes(min(funding), max(funding) + timedelta(minutes=1))
        assert len(funding) >= 5
        pushes = [c for c in contexts if c.coin == coin]
        for minute, row in funding.items():
            expected = _last_in_minute(pushes, minute, stopping_at, stopped_at)
            assert any(
                (row["mark_price"], row["predicted_funding_rate"], row["premium"])
                == (c.funding.mark_price, c.funding.predicted_funding_rate, c.funding.premium)
                and interest[minute]["open_interest"] == c.open_interest.open_interest
                and interest[minute]["notional"] == c.open_interest.notional
                for c in expected
            ), (coin, minute)

    # every stored row was announced to listeners, and nothing else was
    stored_keys = {
        (f"kirby_{table}", series, time)
        for table, column in (
            ("candles", "starlisting_id"),
            ("funding_rates", "trading_pair_id"),
            ("open_interest", "trading_pair_id"),
        )
        for series, time in await conn.fetch(f"SELECT {column}, time FROM {table}")
    }
    assert set(notified) == stored_keys

    # the heartbeat tells the same story
    beat = await conn.fetchrow("SELECT * FROM stream_heartbeats")
    stats = running.collector.stats
    assert beat["collector_id"] == stats.collector_id
    assert beat["messages_received"] == stats.messages_received > 100
    assert beat["invalid_messages"] == beat["dropped_rows"] == beat["reconnects"] == 0
    assert json.loads(beat["rows_written"]) == stats.rows_written
    assert json.loads(beat["buffer_sizes"]) == {
        "candles": 0,
        "funding_rates": 0,
        "open_interest": 0,
        "trades": 0,
        "outages": 0,
        "frames": 0,
    }
    assert beat["started_at"] <= beat["last_message_at"] <= beat["heartbeat_at"]
    assert await conn.fetchval("SELECT count(*) FROM collection_outages") == 0


def _last_in_minute(
    pushes: list[AssetContextUpdate],
    minute: datetime,
    stopping_at: datetime,
    stopped_at: datetime,
) -> list[AssetContextUpdate]:
    """The pushes that may be the last one the collector received in `minute`: the last one
    well inside it, and any received within the tolerance of its end. In the minute the
    collector stopped in, its end is when the collector stopped reading, somewhere between
    the stop request and the collector's exit."""
    end = minute + timedelta(minutes=1)
    if end <= stopping_at:
        late, latest = end - RECEIPT_TOLERANCE, end + RECEIPT_TOLERANCE
    else:
        late, latest = stopping_at - RECEIPT_TOLERANCE, min(end, stopped_at) + RECEIPT_TOLERANCE
    inside = [p for p in pushes if minute <= p.received_at < late]
    near_end = [p for p in pushes if late <= p.received_at < latest]
    return inside[-1:] + near_end
