"""GET /starlistings, /health, /metrics, /coverage, and the catalog refresh."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

from kirby_core.datasets import RECORDED_DATASETS
from tests.api.conftest import BTC_1M, T0, runtime, write_candles


async def test_list_and_filter_starlistings(client, catalog) -> None:
    body = (await client.get("/starlistings")).json()
    assert body["metadata"] == {"count": 8}
    assert [s["series"] for s in body["data"]] == [
        f"hyperliquid/{coin}/USD/perps/{interval}"
        for coin in ("BTC", "SOL")
        for interval in ("1m", "15m", "4h", "1d")
    ]
    first = body["data"][0]
    assert first == {
        "id": catalog["BTC/1m"],
        "series": "hyperliquid/BTC/USD/perps/1m",
        "exchange": "hyperliquid",
        "coin": "BTC",
        "quote": "USD",
        "trading_pair": "BTC/USD",
        "market_type": "perps",
        "interval": "1m",
        "interval_seconds": 60,
        "trading_pair_id": catalog["BTC"],
        "active": True,
        "links": {
            "candles": "/candles/hyperliquid/BTC/USD/perps/1m",
            "funding": "/funding/hyperliquid/BTC/USD/perps",
            "open_interest": "/open-interest/hyperliquid/BTC/USD/perps",
            "coverage": "/coverage/candles/hyperliquid/BTC/USD/perps/1m",
        },
    }
    sol_4h = (await client.get("/starlistings", params={"coin": "sol", "interval": "4H"})).json()
    assert [s["id"] for s in sol_4h["data"]] == [catalog["SOL/4h"]]
    assert (await client.get("/starlistings", params={"exchange": "binance"})).json() == {
        "data": [],
        "metadata": {"count": 0},
    }
    one = (await client.get(f"/starlistings/{catalog['SOL/1d']}")).json()
    assert one["series"] == "hyperliquid/SOL/USD/perps/1d"
    missing = await client.get("/starlistings/999")
    assert (missing.status_code, missing.json()["message"]) == (
        404,
        "unknown starlisting id 999; GET /starlistings lists them",
    )
    bad = await client.get("/starlistings", params={"active": "maybe"})
    assert (bad.status_code, bad.json()["parameter"]) == (400, "active")


async def test_active_filter_follows_catalog_refresh(client, conn, catalog) -> None:
    await conn.execute("UPDATE starlistings SET active = false WHERE id = $1", catalog["BTC/4h"])
    assert len((await client.get("/starlistings", params={"active": "false"})).json()["data"]) == 0
    client.blocking_portal.call(runtime(client).catalog.load)  # what the periodic refresh does
    inactive = (await client.get("/starlistings", params={"active": "false"})).json()["data"]
    assert [s["id"] for s in inactive] == [catalog["BTC/4h"]]
    assert (await client.get("/candles/hyperliquid/BTC/USD/perps/4h")).status_code == 409


async def test_health_reports_database_stream_and_freshness(client, conn, catalog) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await write_candles(conn, catalog["BTC/1m"], range(3))
    await conn.execute(
        "INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at,"
        " last_message_at) VALUES ('hl-1', 'box', 42, $1, $2, $2), ('hl-0', 'box', 41, $1, $3, $3)",
        now - timedelta(hours=1),
        now - timedelta(seconds=5),
        now - timedelta(hours=1),
    )
    client.blocking_portal.call(runtime(client).listener.wait_for_connection, 1)
    body = (await client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["listener"] == {"connected": True}
    stream = body["stream"]
    assert stream["status"] == "ok"
    assert [c["collector_id"] for c in stream["collectors"]] == ["hl-1", "hl-0"]
    assert 5 <= stream["heartbeat_age_seconds"] < 60
    btc = next(f for f in body["freshness"] if f["series"] == "hyperliquid/BTC/USD/perps/1m")
    assert btc["dataset"] == "candles"
    assert btc["latest_time"] == "2024-05-01T00:02:00Z"
    empty = next(f for f in body["freshness"] if f["series"] == "hyperliquid/SOL/USD/perps/1m")
    assert (empty["latest_time"], empty["age_seconds"]) == (None, None)
    assert [f["dataset"] for f in body["freshness"]] == [
        *["candles"] * 8,
        *[name for name in RECORDED_DATASETS[1:] for _ in range(2)],  # per pair: BTC, SOL
    ]
    assert RECORDED_DATASETS[1:] == ("funding_rates", "open_interest", "trades", "books")


async def test_health_is_degraded_when_the_stream_is_stale(client, conn) -> None:
    old = datetime.now(UTC) - timedelta(minutes=10)
    await conn.execute(
        "INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at)"
        " VALUES ('hl', 'box', 1, $1, $1)",
        old,
    )
    response = await client.get("/health")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["stream"]["status"]) == ("degraded", "stale")


async def test_health_says_why_a_beating_collector_is_degraded(client, conn) -> None:
    """A collector that cannot reach the exchange still beats: /health and /status.json
    are degraded and name the reason (today: ok, for as long as the network is gone)."""
    reason = "cannot reach api.hyperliquid.xyz: [Errno -3] Temporary failure in name resolution"
    await conn.execute(
        "INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at,"
        " state, last_error) VALUES ('hl', 'box', 1, now(), now(), 'degraded', $1)",
        reason,
    )
    for path in ("/health", "/status.json"):
        body = (await client.get(path)).json()
        assert (body["status"], body["stream"]["status"]) == ("degraded", "degraded"), path
        assert body["stream"]["reason"] == reason
        [collector] = body["stream"]["collectors"]
        assert (collector["state"], collector["last_error"]) == ("degraded", reason)
    await conn.execute("UPDATE stream_heartbeats SET state = 'stopped', last_error = NULL")
    body = (await client.get("/health")).json()
    assert (body["status"], body["stream"]["status"]) == ("degraded", "stopped")


async def test_health_without_any_heartbeat_is_degraded(client) -> None:
    body = (await client.get("/health")).json()
    assert (body["status"], body["stream"]["status"]) == ("degraded", "missing")


async def test_metrics_expose_latency_freshness_and_ws(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(2))
    await client.get(BTC_1M)
    await client.get("/candles/hyperliquid/NOPE/USD/perps/1m")
    await client.get("/health")
    text = (await client.get("/metrics")).text
    route = "/candles/{exchange}/{coin}/{quote}/{market_type}/{interval}"
    assert (
        f'kirby_api_request_duration_seconds_count{{method="GET",route="{route}",status="200"}} 1.0'
        in text
    )
    assert f'route="{route}",status="404"}} 1.0' in text
    assert (
        'kirby_api_data_age_seconds{dataset="candles",series="hyperliquid/BTC/USD/perps/1m"}'
        in text
    )
    assert "kirby_api_ws_connections 0.0" in text
    assert "kirby_api_listen_connected 1.0" in text


async def test_metrics_time_garbage_collector_passes(client) -> None:
    gc.collect()  # a full pass, as the collector makes now and then under load

    text = (await client.get("/metrics")).text

    [count] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('kirby_api_gc_pause_seconds_count{generation="2"}')
    ]
    assert count >= 1


async def test_coverage_marks_outages_and_unavailable_at_source(client, conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    await write_candles(conn, sid, range(0, 1440, 2))  # half of May 1st
    await conn.execute(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ('candles', $1, $2, $3, 'disconnect')",
        sid,
        T0 + timedelta(hours=23),
        T0 + timedelta(days=1, hours=1),
    )
    body = (
        await client.get(
            "/coverage/candles/hyperliquid/BTC/USD/perps/1m",
            params={"start_time": "2024-05-01", "end_time": "2024-05-03"},
        )
    ).json()
    assert body["data"] == [
        {
            "date": "2024-05-01",
            "expected": 1440,
            "present": 720,
            "missing": 720,
            "completeness": 0.5,
            "outage_minutes": 60,
            "unavailable_at_source": True,  # Hyperliquid keeps ~3.5 days of 1m candles
            "status": "outage",
            "unavailable_rows": 720,  # the one classifier's classes
            "no_trades": 0,
            "outage_rows": 0,
            "unexplained": 0,
            "integrity_gap_minutes": 0,
        },
        {
            "date": "2024-05-02",
            "expected": 1440,
            "present": 0,
            "missing": 1440,
            "completeness": 0.0,
            "outage_minutes": 60,
            "unavailable_at_source": True,
            "status": "unavailable_at_source",
            "unavailable_rows": 1440,  # the one classifier's classes
            "no_trades": 0,
            "outage_rows": 0,
            "unexplained": 0,
            "integrity_gap_minutes": 0,
        },
        {
            "date": "2024-05-03",
            "expected": 1440,
            "present": 0,
            "missing": 1440,
            "completeness": 0.0,
            "outage_minutes": 0,
            "unavailable_at_source": True,
            "status": "unavailable_at_source",
            "unavailable_rows": 1440,  # the one classifier's classes
            "no_trades": 0,
            "outage_rows": 0,
            "unexplained": 0,
            "integrity_gap_minutes": 0,
        },
    ]
    meta = body["metadata"]
    assert (meta["start_date"], meta["end_date"], meta["interval"]) == (
        "2024-05-01",
        "2024-05-03",
        "1m",
    )
    assert meta["source_note"] == "Hyperliquid serves only its latest 5000 candles"
    assert meta["live_collection"] == "websocket"


async def test_coverage_today_expects_rows_only_up_to_now(client, catalog) -> None:
    today = datetime.now(UTC).date().isoformat()
    body = (
        await client.get(
            "/coverage/candles/hyperliquid/BTC/USD/perps/1d",
            params={"start_time": today, "end_time": today},
        )
    ).json()
    assert body["data"][0]["expected"] == 0  # today's daily candle has not closed
    assert body["data"][0]["status"] == "future"
    recent = (await client.get("/coverage/candles/hyperliquid/BTC/USD/perps/1m")).json()
    assert len(recent["data"]) == 30  # the default window
    assert recent["data"][-1]["date"] == today
    assert recent["data"][-1]["unavailable_at_source"] is False  # still served by the exchange
    assert recent["data"][-1]["status"] in {"missing", "future"}


async def test_coverage_of_pairs_and_bad_ranges(client, catalog) -> None:
    oi = (
        await client.get(
            "/coverage/open-interest/hyperliquid/SOL/USD/perps",
            params={"start_time": "2024-05-01", "end_time": "2024-05-01"},
        )
    ).json()
    assert oi["data"][0]["status"] == "unavailable_at_source"
    assert oi["metadata"]["source_note"] == "Hyperliquid publishes no open-interest history"
    assert oi["metadata"]["live_collection"] == "websocket"  # activeAssetCtx carries it
    funding = await client.get(
        "/coverage/funding/hyperliquid/BTC/USD/perps",
        params={"start_time": "2024-01-01", "end_time": "2025-06-01"},
    )
    assert funding.status_code == 400
    assert funding.json()["message"] == "518 days requested; at most 366 per request"
    backwards = await client.get(
        "/coverage/funding/hyperliquid/BTC/USD/perps",
        params={"start_time": "2024-05-02", "end_time": "2024-05-01"},
    )
    assert backwards.json()["message"] == "start_time (2024-05-02) is after end_time (2024-05-01)"


async def test_health_is_503_down_when_storage_fails(client, conn) -> None:
    await conn.execute("ALTER TABLE stream_heartbeats RENAME TO stream_heartbeats_away")
    try:
        response = await client.get("/health")
    finally:
        await conn.execute("ALTER TABLE stream_heartbeats_away RENAME TO stream_heartbeats")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]["status"]) == ("down", "down")
    # a refusal (not migrated), not an outage: the reason is said
    assert body["database"]["error"] == 'relation "stream_heartbeats" does not exist'
    assert body["freshness"] == []


async def test_access_log_is_one_structured_line_per_request(client, caplog) -> None:
    caplog.set_level("INFO", logger="kirby_api.access")
    await client.get("/starlistings", params={"coin": "BTC"})
    await client.get("/candles/hyperliquid/NOPE/USD/perps/1m")
    lines = [r.getMessage() for r in caplog.records if r.name == "kirby_api.access"]
    assert len(lines) == 2
    assert lines[0].startswith(
        "request method=GET path=/starlistings route=/starlistings status=200 duration_ms="
    )
    assert lines[0].endswith("key=- client=testclient")
    assert (
        "route=/candles/{exchange}/{coin}/{quote}/{market_type}/{interval} status=404" in lines[1]
    )


async def test_openapi_documents_auth_formats_errors_and_examples(client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    assert set(doc["components"]["securitySchemes"]) == {"BearerKey", "HeaderKey"}
    candles = doc["paths"]["/candles/{exchange}/{coin}/{quote}/{market_type}/{interval}"]["get"]
    assert set(candles["responses"]) == {"200", "400", "401", "404", "409", "429", "503"}
    assert set(candles["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.parquet",
    }
    error = candles["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    params = {p["name"]: p for p in candles["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 5000
    assert params["coin"]["schema"]["examples"] == ["BTC"]
    assert "2024-05-01T00:00:00Z" in params["start_time"]["schema"]["examples"]
    funding = doc["components"]["schemas"]["FundingData"]["properties"]
    assert "paid for the hour" in funding["settled_funding_rate"]["description"]
    assert doc["paths"]["/health"]["get"]["security"] == [{}]
    assert "/ws" in doc["info"]["description"]
    assert (await client.get("/schema")).status_code == 200  # Swagger UI
