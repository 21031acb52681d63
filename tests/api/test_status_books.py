"""Order-book integrity on /status.json and /metrics, from seeded `book_integrity`, `books`
and a heartbeat written by the collector's own writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from kirby_core.db.books import BookRow, IntegrityRow, write_book_integrity, write_books
from kirby_core.models import BookReport
from kirby_stream.heartbeat import write_heartbeat
from kirby_stream.stats import Stats
from tests.ops.test_metrics import samples, value

REPORT = BookReport(
    state="running",
    books=2,
    whole=1,
    messages_received=900,
    updates=800,
    gaps=3,
    resyncs=3,
    snapshots_refused=2,
    crossed=0,
    stale_ms=4500,
    samples=120,
)


async def seed(conn: asyncpg.Connection, catalog: dict[str, int]) -> datetime:
    now = datetime.now(UTC)
    stats = Stats(collector_id="collector-b", started_at=now - timedelta(hours=1))
    stats.state = "running"
    stats.feed("hyperliquid").books = REPORT
    await write_heartbeat(conn, stats)
    minute = now.replace(second=0, microsecond=0)
    btc, sol = catalog["BTC"], catalog["SOL"]
    await write_book_integrity(
        conn,
        [
            IntegrityRow(btc, minute - timedelta(minutes=2), 60, 1, 1, 2500, 0),
            IntegrityRow(btc, minute - timedelta(minutes=1), 58, 0, 0, 0, 0),
            IntegrityRow(sol, minute - timedelta(minutes=1), 40, 0, 0, 0, 0),
            IntegrityRow(sol, minute - timedelta(minutes=90), 40, 7, 7, 9000, 0),  # too old
        ],
    )
    sample = now.replace(microsecond=0) - timedelta(seconds=5)
    level = ((Decimal("100.5"), Decimal("1")),)
    asks = ((Decimal("100.6"), Decimal("2")),)
    await write_books(conn, [BookRow(btc, sample, None, level, asks)])
    return sample


async def test_status_json_reports_book_integrity_per_pair_and_exchange(
    client, conn, catalog
) -> None:
    sample = await seed(conn, catalog)
    body = (await client.get("/status.json")).json()
    books = {b["pair"]: b for b in body["books"]}
    assert books["hyperliquid/BTC/USD/perps"] == {
        "exchange": "hyperliquid",
        "pair": "hyperliquid/BTC/USD/perps",
        "trading_pair_id": catalog["BTC"],
        "window_minutes": 60,
        "minutes": 2,
        "updates": 118,
        "gaps": 1,
        "resyncs": 1,
        "stale_seconds": 2.5,
        "crossed": 0,
        "latest_sample": sample.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    sol = books["hyperliquid/SOL/USD/perps"]
    assert (sol["minutes"], sol["gaps"], sol["latest_sample"]) == (1, 0, None)
    (exchange,) = [x for x in body["exchanges"] if x["exchange"] == "hyperliquid"]
    assert exchange["books"]["gaps"] == 3 and exchange["books"]["whole"] == 1


async def test_metrics_carry_each_exchanges_book_counters(api, conn, catalog) -> None:
    await seed(conn, catalog)
    async with api(api_auth_enabled=False) as client:
        found = samples((await client.get("/metrics")).text)
    exchange = {"exchange": "hyperliquid"}
    assert value(found, "kirby_collector_book_updates_total", **exchange) == 800
    assert value(found, "kirby_collector_book_gaps_total", **exchange) == 3
    assert value(found, "kirby_collector_book_resyncs_total", **exchange) == 3
    assert value(found, "kirby_collector_book_crossed_total", **exchange) == 0
    assert value(found, "kirby_collector_book_snapshots_refused_total", **exchange) == 2
    assert value(found, "kirby_collector_book_stale_seconds_total", **exchange) == 4.5
    assert value(found, "kirby_collector_books", state="kept", **exchange) == 2
    assert value(found, "kirby_collector_books", state="whole", **exchange) == 1
