"""The live trade tape on the simulator: every trade of every pair of the five exchanges,
exact, once, and its gaps recorded as `trades` outages.

The simulator's prints of a closed minute add up exactly to its 1m candle (count, volume,
high, low, close; its open is the previous minute's close), so the trades stored for a
minute must rebuild the 1m candle the collector stored from the exchange's candle feed.
A dropped connection makes Hyperliquid and Coinbase replay recent trades on resubscribing
(counted as duplicates, stored once) and costs Binance, Bybit and OKX the trades of the
disconnect (recorded as outages); a cut exchange costs only its own pairs.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_sim import SimulatorServer
from tests.stream.helpers import Running, collecting
from tests.stream.proxy import PostgresProxy
from tests.stream.test_five_exchanges import every_feed_running, five, on_sim, sim

__all__ = ["five", "sim"]  # fixtures shared with the five-exchange tests

MINUTE = timedelta(minutes=1)


async def rebuilt_minutes(
    conn: asyncpg.Connection, pair: int, start: datetime, end: datetime
) -> dict[datetime, tuple]:
    """1m candles rebuilt from the stored trades of `pair`: minute -> O, H, L, C, V, count."""
    rows = await conn.fetch(
        """SELECT date_trunc('minute', time) AS minute,
                  (array_agg(price ORDER BY time, trade_id::numeric))[1] AS open,
                  max(price) AS high, min(price) AS low,
                  (array_agg(price ORDER BY time DESC, trade_id::numeric DESC))[1] AS close,
                  sum(size) AS volume, count(*) AS trades
           FROM trades WHERE trading_pair_id = $1 AND time >= $2 AND time < $3
           GROUP BY 1 ORDER BY 1""",
        pair,
        start,
        end,
    )
    return {row["minute"]: tuple(row)[1:] for row in rows}


async def stored_minutes(
    conn: asyncpg.Connection, starlisting: int, start: datetime, end: datetime
) -> dict[datetime, tuple]:
    rows = await conn.fetch(
        "SELECT time, open, high, low, close, volume, trade_count FROM candles"
        " WHERE starlisting_id = $1 AND time >= $2 AND time < $3 AND volume > 0 ORDER BY time",
        starlisting,
        start,
        end,
    )
    return {row["time"]: tuple(row)[1:] for row in rows}


def on_tape(settings: Settings, sim: SimulatorServer, **overrides: object) -> Settings:
    """The trade tape on; a stall after 5 s (100 simulated seconds): a connection carrying
    trades alone (Binance futures' /public, Coinbase) is quiet while nobody trades; the
    database's answers may take a while on a loaded machine."""
    timings = {"stream_stall_seconds": 5.0, "stream_database_timeout_seconds": 10.0}
    return on_sim(settings, sim, stream_trades=True, **{**timings, **overrides})


async def until_minutes_pass(running: Running, sim: SimulatorServer, count: int) -> datetime:
    """Wait until `count` whole minutes after the current one have closed; the first of them."""
    first = floor_minute(sim.clock.now()) + MINUTE
    await running.until(lambda: sim.clock.now() >= first + count * MINUTE, within=40)
    return first


async def test_every_trade_of_five_exchanges_is_stored_once_and_rebuilds_the_candles(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    sim: SimulatorServer,
    five: list[catalog_store.Starlisting],
) -> None:
    pairs = await catalog_store.list_trading_pairs(conn)
    async with collecting(on_tape(settings, sim), database_urls.realtime, sim) as running:
        await running.until(lambda: every_feed_running(running), within=50)
        first = await until_minutes_pass(running, sim, 2)
        sim.faults.drop_connections()
        await running.until(lambda: running.stats.reconnects >= 7, within=20)
        after = await until_minutes_pass(running, sim, 2)
        # one more minute: the candles polled after a minute's close (Coinbase) are final
        await running.until(lambda: sim.clock.now() >= after + 3 * MINUTE, within=20)
        await running.until(lambda: running.stats.duplicate_trades > 0, within=20)
        stats = running.stats
    assert stats.invalid_messages == 0, stats
    assert stats.refused_rows == 0, stats
    assert all(feed.trades > 0 for feed in stats.feeds.values()), stats.feeds
    heartbeat = await conn.fetchrow(
        "SELECT feeds, rows_written FROM stream_heartbeats WHERE collector_id = $1",
        stats.collector_id,
    )
    feeds = json.loads(heartbeat["feeds"])
    assert all(feeds[name]["trades"] > 0 for name in feeds), feeds
    stored = await conn.fetchval("SELECT count(*) FROM trades")
    assert json.loads(heartbeat["rows_written"])["trades"] == stored  # the last beat: all

    # Every closed minute from `first` on, for every pair: the stored trades rebuild
    # exactly the 1m candle stored from the exchange's candle feed, or a trades outage of
    # the pair overlaps the minute (the drop cost Binance, Bybit and OKX some trades).
    one_minute = {s.trading_pair_id: s.id for s in five if s.key.interval == "1m"}
    outages = await conn.fetch(
        "SELECT series_id, start_time, end_time FROM collection_outages WHERE dataset = 'trades'"
    )
    end = after + 2 * MINUTE
    exact: Counter[tuple[str, str]] = Counter()
    for pair in pairs:
        rebuilt = await rebuilt_minutes(conn, pair.id, first, end)
        candles = await stored_minutes(conn, one_minute[pair.id], first, end)
        assert len(candles) >= 4, (str(pair.key), sorted(candles))
        for minute, candle in candles.items():
            # high, low, close, volume and (where the exchange counts them) trades; the
            # simulator opens a minute at the previous close, not at its first trade
            wanted = candle[1:] if candle[5] is not None else candle[1:5]
            if rebuilt.get(minute, ())[1 : 1 + len(wanted)] == wanted:
                exact[pair.key.exchange, pair.key.market_type] += 1
                continue
            assert any(
                o["series_id"] == pair.id
                and o["start_time"] < minute + MINUTE
                and o["end_time"] > minute
                for o in outages
            ), ("a difference no outage explains", str(pair.key), minute, candle, rebuilt)
    # every exchange and market type (OKX swaps: contracts turned into coins) rebuilds
    # several minutes exactly
    shapes = {(p.key.exchange, p.key.market_type) for p in pairs}
    assert all(exact[shape] >= 2 for shape in shapes), exact
    assert sum(exact.values()) >= 3 * len(pairs)
    # Replayed trades were counted as duplicates and stored once: no trade id twice.
    repeated = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM trades GROUP BY trading_pair_id, trade_id"
        " HAVING count(*) > 1) t"
    )
    assert repeated == 0
    # Change events name, per pair, the first and last trade time of each flush.
    payloads = await conn.fetch("SELECT payload FROM change_events WHERE dataset = 'trades'")
    spans = [span for row in payloads for span in json.loads(row["payload"]).values()]
    assert spans and all(len(span) <= 2 for span in spans)


async def test_a_cut_exchange_records_trades_outages_for_its_pairs_only(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    sim: SimulatorServer,
    five: list[catalog_store.Starlisting],
) -> None:
    pairs = await catalog_store.list_trading_pairs(conn)
    async with PostgresProxy(f"postgresql://127.0.0.1:{sim.port}/okx") as proxy:
        okx_origin = f"ws://127.0.0.1:{urlsplit(proxy.url).port}"
        origins = {**sim.ws_origins, "wss://ws.okx.com:8443": okx_origin}
        settings = on_tape(settings, sim, ws_origins=origins)
        async with collecting(settings, database_urls.realtime, sim) as running:
            await running.until(lambda: every_feed_running(running), within=50)
            proxy.cut()
            await running.until(lambda: running.stats.feeds["okx"].state == "degraded")
            await until_minutes_pass(running, sim, 1)
            proxy.restore()
            await running.until(lambda: running.stats.feeds["okx"].outages > 0, within=20)
            okx_pairs = {p.id for p in pairs if p.key.exchange == "okx"}
            await running.until(
                lambda: conn.fetchval(
                    "SELECT count(DISTINCT series_id) = $1 FROM collection_outages"
                    " WHERE dataset = 'trades'",
                    len(okx_pairs),
                ),
                within=20,
            )
        await asyncio.sleep(0)
    rows = await conn.fetch(
        "SELECT series_id, start_time, end_time FROM collection_outages WHERE dataset = 'trades'"
    )
    assert {row["series_id"] for row in rows} == okx_pairs
    for row in rows:
        assert row["end_time"] - row["start_time"] >= MINUTE
        # nothing of the pair was stored inside its window: the outage is where trades
        # may have been missed, and only there
        inside = await conn.fetchval(
            "SELECT count(*) FROM trades WHERE trading_pair_id = $1 AND time > $2 AND time < $3",
            row["series_id"],
            row["start_time"],
            row["end_time"],
        )
        assert inside == 0
