"""/status.json against seeded data, and the /status and /chart pages as HTTP resources.

What the pages do in a browser is checked in test_pages_browser.py.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import asyncpg

from kirby_api.keys import create_key
from kirby_core.timeutil import floor_minute
from kirby_stream.heartbeat import write_heartbeat
from kirby_stream.stats import Stats
from tests.api.conftest import runtime, write_candles

BTC_1M = "hyperliquid/BTC/USD/perps/1m"


async def seed_heartbeat(conn: asyncpg.Connection, messages: int = 1234) -> datetime:
    """A collector's row written by the collector's own writer; returns its last message."""
    now = datetime.now(UTC)
    stats = Stats(
        collector_id="collector-a",
        started_at=now - timedelta(hours=1),
        messages_received=messages,
        invalid_messages=2,
        reconnects=1,
        dropped_rows=5,
        refused_rows=4,
        last_message_at=now - timedelta(seconds=3),
        buffer_sizes={"candles": 3},
    )
    stats.tables["candles"].rows_written = 900
    stats.state = "running"
    await write_heartbeat(conn, stats)
    return now - timedelta(seconds=3)


async def seed_recent_candles(conn: asyncpg.Connection, sid: int, count: int = 10) -> datetime:
    """`count` candles ending with the current minute; returns the newest one's time."""
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=count - 1)
    await write_candles(conn, sid, range(count), start=start)
    return start + timedelta(minutes=count - 1)


async def seed_outage_yesterday(conn: asyncpg.Connection, sid: int) -> None:
    """45 minutes of yesterday, UTC."""
    yesterday = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), datetime.min.time())
    start = yesterday.replace(tzinfo=UTC, hour=10)
    await conn.execute(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ('candles', $1, $2, $3, 'disconnect')",
        sid,
        start,
        start + timedelta(minutes=45),
    )


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_status_json_reports_collectors_freshness_coverage(client, conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    last_message = await seed_heartbeat(conn)
    newest = await seed_recent_candles(conn, sid)
    await seed_outage_yesterday(conn, sid)
    client.blocking_portal.call(runtime(client).listener.wait_for_connection, 1)

    response = await client.get("/status.json", params={"days": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"

    stream = body["stream"]
    assert (stream["status"], stream["stale_after_seconds"]) == ("ok", 120.0)
    [collector] = stream["collectors"]
    assert 0 <= collector.pop("heartbeat_age_seconds") < 60
    assert 3 <= collector.pop("last_message_age_seconds") < 60
    assert collector.pop("heartbeat_at") > collector.pop("started_at")
    assert collector == {
        "collector_id": "collector-a",
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "last_message_at": last_message.isoformat().replace("+00:00", "Z"),
        "state": "running",
        "last_error": None,
        "messages_received": 1234,
        "invalid_messages": 2,
        "dropped_rows": 5,
        "refused_rows": 4,
        "reconnects": 1,
        "rows_written": {"candles": 900, "funding_rates": 0, "open_interest": 0, "trades": 0},
        "buffer_sizes": {"candles": 3},
        "stale": False,
    }

    series = {(s["dataset"], s["series"]): s for s in body["series"]}
    # active starlistings; funding, open interest, trades and books per pair
    assert len(series) == 8 + 4 * 2
    btc = series[("candles", BTC_1M)]
    assert btc["latest_time"] == iso(newest)
    assert btc["interval"] == "1m"
    assert btc["lag_seconds"] <= 60  # 0 unless the minute turned since the write
    assert btc["state"] == "fresh"
    sol = series[("candles", "hyperliquid/SOL/USD/perps/1m")]
    assert (sol["latest_time"], sol["lag_seconds"], sol["state"]) == (None, None, "empty")
    assert series[("funding_rates", "hyperliquid/BTC/USD/perps")]["interval"] == "1m"

    coverage = {(c["dataset"], c["series"]): c for c in body["coverage"]}
    assert coverage.keys() == series.keys()
    assert all(len(c["days"]) == 2 for c in coverage.values())
    today = datetime.now(UTC).date()
    same = (
        await client.get(
            f"/coverage/candles/{BTC_1M}",
            params={"start_time": str(today - timedelta(days=1)), "end_time": str(today)},
        )
    ).json()["data"]
    assert coverage[("candles", BTC_1M)]["days"] == same  # the /coverage numbers
    yesterday = same[0]
    assert (yesterday["outage_minutes"], yesterday["status"]) == (45, "outage")
    for dataset in ("trades", "books"):
        pair_days = (
            await client.get(
                f"/coverage/{dataset}/hyperliquid/BTC/USD/perps",
                params={"start_time": str(today - timedelta(days=1)), "end_time": str(today)},
            )
        ).json()["data"]
        # yesterday's: today's expected minutes grow between the two reads
        assert coverage[(dataset, "hyperliquid/BTC/USD/perps")]["days"][0] == pair_days[0]

    assert body["websocket"] == {
        "connections": 0,
        "keys": 0,
        "subscriptions": 0,
        "messages_sent": 0,
        "messages_dropped": 0,
        "listener_connected": True,
    }


async def test_status_json_counts_websocket_clients(client, catalog) -> None:
    with await client.websocket_connect("/ws") as ws:
        ws.send_json(
            {"action": "subscribe", "starlisting_ids": [catalog["BTC/1m"], catalog["SOL/1m"]]}
        )
        assert ws.receive_json(timeout=10)["type"] == "success"
        clients = (await client.get("/status.json")).json()["websocket"]
    assert (clients["connections"], clients["subscriptions"]) == (1, 2)
    assert clients["messages_sent"] >= 1  # the success message


async def test_status_without_collectors_or_data(client) -> None:
    body = (await client.get("/status.json")).json()
    assert (body["status"], body["stream"]["status"]) == ("degraded", "missing")
    assert body["stream"]["collectors"] == []
    assert all(s["state"] == "empty" for s in body["series"])
    default_days = {len(c["days"]) for c in body["coverage"]}
    assert default_days == {3}


async def test_status_is_503_down_when_storage_fails(client, conn) -> None:
    await conn.execute("ALTER TABLE stream_heartbeats RENAME TO stream_heartbeats_away")
    try:
        response = await client.get("/status.json")
    finally:
        await conn.execute("ALTER TABLE stream_heartbeats_away RENAME TO stream_heartbeats")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]["status"]) == ("down", "down")
    assert (body["series"], body["coverage"], body["stream"]["collectors"]) == ([], [], [])


async def test_bad_days_are_400(client) -> None:
    for value in ("0", "15", "three", "-1"):
        response = await client.get("/status.json", params={"days": value})
        assert response.status_code == 400, value
        body = response.json()
        assert (body["error"], body["parameter"]) == ("invalid_parameter", "days")


async def test_pages_and_status_are_public_and_hold_no_secrets(api, conn, settings) -> None:
    token = (await create_key(conn, "viewer"))[1]
    async with api(api_auth_enabled=True) as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            ws.send_json({"action": "ping"})
            assert ws.receive_json(timeout=10)["type"] == "pong"
            status = await client.get("/status.json")
        assert status.status_code == 200
        assert status.json()["websocket"]["keys"] == 1
        for secret in (token, token[:12], settings.database_url):
            assert secret not in status.text
        for path in ("/status", "/chart", "/static/chart.js", "/static/kirby.css"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/starlistings")).status_code == 401  # data still needs a key


async def test_pages_are_html_with_their_scripts(client) -> None:
    for path, script in (("/status", "static/status.js"), ("/chart", "static/chart.js")):
        response = await client.get(path)
        assert response.headers["content-type"].startswith("text/html")
        assert f'<script src="{script}" defer></script>' in response.text
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        asset = await client.get(f"/{script}")
        assert asset.status_code == 200
        assert "javascript" in asset.headers["content-type"]
    missing = await client.get("/static/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert (await client.get("/static/../app.py")).status_code == 404


async def test_openapi_documents_status_json_only(client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    get = paths["/status.json"]["get"]
    assert get["security"] == [{}]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Status"
    }
    assert {p["name"] for p in get["parameters"]} == {"days"}
    assert not {"/status", "/chart"} & paths.keys()
    assert not [p for p in paths if p.startswith("/static")]
