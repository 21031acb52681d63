"""The /ws protocol through Litestar's test client: history, live rows via real NOTIFYs,
channels, unsubscribe, errors, limits, authentication, heartbeat."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from litestar.exceptions import WebSocketDisconnect

from kirby_api.keys import create_key
from kirby_core.db import notify
from kirby_core.db.writer import upsert_funding_rates, upsert_open_interest
from kirby_core.models import FundingRateRow, OpenInterestRow
from kirby_core.timeutil import floor_minute
from tests.api.conftest import T0, candle_json, runtime, write_candles

TIMEOUT = 10


def receive(ws) -> dict:
    return ws.receive_json(timeout=TIMEOUT)


def subscribe(ws, ids, **extra) -> dict:
    ws.send_json({"action": "subscribe", "starlisting_ids": ids, **extra})
    return receive(ws)


async def test_subscribe_sends_history_then_live_rows(client, conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    await write_candles(conn, sid, range(10))
    with await client.websocket_connect("/ws") as ws:
        ack = subscribe(ws, [sid], history=3)
        assert ack == {
            "type": "success",
            "action": "subscribe",
            "message": "subscribed 1 starlisting(s); 1 subscribed",
            "starlisting_ids": [sid],
            "channels": ["candles"],
            "subscriptions": {str(sid): ["candles"]},
        }
        assert receive(ws) == {
            "type": "historical",
            "channel": "candles",
            "series": "hyperliquid/BTC/USD/perps/1m",
            "count": 3,
            "data": [candle_json(7), candle_json(8), candle_json(9)],
            "starlisting_id": sid,
        }
        await write_candles(conn, sid, range(9, 11), announce=True)  # an update and a new row
        event_id = await conn.fetchval("SELECT max(id) FROM change_events")
        assert receive(ws) == {
            "type": "candle",
            "starlisting_id": sid,
            "series": "hyperliquid/BTC/USD/perps/1m",
            "data": candle_json(9),
            "event_id": event_id,
        }
        assert receive(ws) == {
            "type": "candle",
            "starlisting_id": sid,
            "series": "hyperliquid/BTC/USD/perps/1m",
            "data": candle_json(10),
            "event_id": event_id,  # one flush, one event
        }


async def test_funding_and_open_interest_channels(client, conn, catalog) -> None:
    pair = catalog["BTC"]
    await upsert_funding_rates(
        conn,
        [
            FundingRateRow(
                pair, T0 + timedelta(minutes=m), predicted_funding_rate=Decimal(f"0.0000{m}1")
            )
            for m in range(3)
        ],
    )
    await upsert_open_interest(conn, [OpenInterestRow(pair, T0, Decimal("1234.5"))])
    with await client.websocket_connect("/ws") as ws:
        # two intervals of one pair: its funding and OI come once, not twice
        ack = subscribe(
            ws,
            [catalog["BTC/1m"], catalog["BTC/4h"]],
            history=2,
            channels=["funding", "open_interest"],
        )
        assert ack["subscriptions"] == {
            str(catalog["BTC/1m"]): ["funding", "open_interest"],
            str(catalog["BTC/4h"]): ["funding", "open_interest"],
        }
        history = sorted((receive(ws), receive(ws)), key=lambda m: m["channel"])
        assert [(m["channel"], m["trading_pair_id"], m["count"]) for m in history] == [
            ("funding", pair, 2),
            ("open_interest", pair, 1),
        ]
        assert [r["predicted_funding_rate"] for r in history[0]["data"]] == ["0.000011", "0.000021"]
        assert history[1]["data"][0]["open_interest"] == "1234.5"

        async with conn.transaction():
            await upsert_funding_rates(
                conn,
                [
                    FundingRateRow(
                        pair, T0 + timedelta(minutes=3), predicted_funding_rate=Decimal("0.5")
                    )
                ],
            )
            await notify.notify(conn, "funding_rates", {pair: [T0 + timedelta(minutes=3)]})
        live = receive(ws)
        assert (live["type"], live["trading_pair_id"], live["series"]) == (
            "funding",
            pair,
            "hyperliquid/BTC/USD/perps",
        )
        assert live["data"]["predicted_funding_rate"] == "0.5"
        assert live["data"]["settled_funding_rate"] is None
        # nothing else is queued: the next message is the answer to a ping
        ws.send_json({"action": "ping"})
        assert receive(ws)["type"] == "pong"


async def test_unsubscribe_stops_one_series_only(client, conn, catalog) -> None:
    btc, sol = catalog["BTC/1m"], catalog["SOL/1m"]
    with await client.websocket_connect("/ws") as ws:
        subscribe(ws, [btc, sol])
        ws.send_json({"action": "unsubscribe", "starlisting_ids": [btc]})
        assert receive(ws)["subscriptions"] == {str(sol): ["candles"]}
        await write_candles(conn, btc, range(1), announce=True)
        await write_candles(conn, sol, range(1), announce=True)
        # notifications are handled in order: SOL's arrival proves BTC's was skipped
        assert receive(ws)["starlisting_id"] == sol


async def test_ping_pong_and_binary_frames(client) -> None:
    with await client.websocket_connect("/ws") as ws:
        ws.send_json({"action": "ping"})
        pong = receive(ws)
        assert pong["type"] == "pong" and pong["timestamp"].endswith("Z")
        ws.send_bytes(b'{"action": "ping"}')
        assert receive(ws)["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("{nope", "invalid_json", "message is not valid JSON"),
        ("[" * 20_000 + "]" * 20_000, "invalid_json", "message is nested too deeply"),
        ("[1, 2]", "validation_error", 'message must be a JSON object with an "action"'),
        ('{"action": "dance"}', "unknown_action", "unknown action 'dance'; allowed: subscribe"),
        (
            '{"action": "subscribe", "starlisting_ids": [1], "history": 5000}',
            "validation_error",
            "invalid subscribe: Expected `int` <= 1000 - at `$.history`",
        ),
        (
            '{"action": "subscribe", "starlisting_ids": []}',
            "validation_error",
            "invalid subscribe: Expected `array` of length >= 1 - at `$.starlisting_ids`",
        ),
        (
            json.dumps({"action": "subscribe", "starlisting_ids": list(range(1, 102))}),
            "validation_error",
            "invalid subscribe: Expected `array` of length <= 100 - at `$.starlisting_ids`",
        ),
        (
            '{"action": "subscribe", "starlisting_ids": [1], "channels": ["tickers"]}',
            "validation_error",
            "invalid subscribe: Invalid enum value 'tickers' - at `$.channels[0]`",
        ),
        (
            '{"action": "subscribe", "starlisting_ids": [1], "histroy": 5}',
            "validation_error",
            "invalid subscribe: Object contains unknown field `histroy`",
        ),
        (
            '{"action": "subscribe", "starlisting_ids": [1, 77, 78]}',
            "unknown_series",
            "unknown starlisting ids: 77, 78; GET /starlistings lists them",
        ),
    ],
)
async def test_bad_frames_get_an_error_and_the_connection_stays(
    client, catalog, frame: str, code: str, message: str
) -> None:
    with await client.websocket_connect("/ws") as ws:
        ws.send_text(frame)
        error = receive(ws)
        assert (error["type"], error["code"]) == ("error", code)
        assert error["message"].startswith(message)
        ws.send_json({"action": "ping"})
        assert receive(ws)["type"] == "pong"


async def test_inactive_series_and_subscription_cap(api, conn, catalog) -> None:
    await conn.execute("UPDATE starlistings SET active = false WHERE id = $1", catalog["SOL/1d"])
    async with api(api_auth_enabled=False, api_ws_max_subscriptions=2) as client:
        with await client.websocket_connect("/ws") as ws:
            error = subscribe(ws, [catalog["SOL/1d"]])
            assert (error["code"], error["message"]) == (
                "inactive_series",
                "inactive (removed from the catalog): hyperliquid/SOL/USD/perps/1d",
            )
            assert subscribe(ws, [catalog["BTC/1m"], catalog["BTC/15m"]])["type"] == "success"
            error = subscribe(ws, [catalog["BTC/4h"]])
            assert (error["code"], error["message"]) == (
                "too_many_subscriptions",
                "a connection may subscribe to at most 2 starlistings; this subscribe would make 3",
            )
            # re-subscribing what it has (other channels) is not more subscriptions
            again = subscribe(ws, [catalog["BTC/1m"]], channels=["funding"])
            assert again["subscriptions"][str(catalog["BTC/1m"])] == ["candles", "funding"]


async def test_oversized_message_closes_1009(api) -> None:
    async with api(api_auth_enabled=False, api_ws_max_message_bytes=100) as client:
        with await client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps({"action": "ping", "pad": "x" * 200}))
            with pytest.raises(WebSocketDisconnect) as closed:
                receive(ws)
    assert closed.value.code == 1009
    assert closed.value.detail == "message of 229 bytes; the limit is 100"


async def test_server_heartbeat(api) -> None:
    async with api(api_auth_enabled=False, api_ws_heartbeat_seconds=0.05) as client:
        with await client.websocket_connect("/ws") as ws:
            beat = receive(ws)
    assert beat["type"] == "ping"
    assert beat["timestamp"].endswith("Z")


async def test_websocket_authentication_is_a_close_code(api, conn) -> None:
    _, token = await create_key(conn, "ws")
    async with api() as client:
        with (
            await client.websocket_connect("/ws") as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            receive(ws)
        assert closed.value.code == 4401
        assert closed.value.detail.startswith("missing API key")
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            ws.send_json({"action": "ping"})
            assert receive(ws)["type"] == "pong"
        with await client.websocket_connect("/ws", headers={"X-API-Key": token}) as ws:
            ws.send_json({"action": "ping"})
            assert receive(ws)["type"] == "pong"


async def test_connection_caps_per_key_and_global(api, conn) -> None:
    _, capped = await create_key(conn, "one at a time", max_ws_connections=1)
    _, other = await create_key(conn, "other")
    async with api(api_ws_max_connections=2) as client:
        with await client.websocket_connect(f"/ws?api_key={capped}") as first:
            first.send_json({"action": "ping"})
            assert receive(first)["type"] == "pong"
            with (
                await client.websocket_connect(f"/ws?api_key={capped}") as second,
                pytest.raises(WebSocketDisconnect) as per_key,
            ):
                receive(second)
            assert per_key.value.code == 4429
            assert per_key.value.detail.endswith(
                "already holds 1 WebSocket connection(s), its limit"
            )
            with await client.websocket_connect(f"/ws?api_key={other}") as third:
                third.send_json({"action": "ping"})
                assert receive(third)["type"] == "pong"
                with (
                    await client.websocket_connect(f"/ws?api_key={other}") as fourth,
                    pytest.raises(WebSocketDisconnect) as full,
                ):
                    receive(fourth)
                assert full.value.code == 1013
        metrics = (await client.get("/metrics")).text
        assert 'kirby_api_ws_closed_total{reason="key_connection_cap"} 1.0' in metrics
        assert 'kirby_api_ws_closed_total{reason="server_full"} 1.0' in metrics


async def test_listener_reconnects_and_resends_what_was_missed(client, conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    now = floor_minute(datetime.now(UTC))  # live rows (a fallback resync goes by time)
    listener = runtime(client).listener
    with await client.websocket_connect("/ws") as ws:
        subscribe(ws, [sid])
        await write_candles(conn, sid, range(1), announce=True, start=now)
        assert receive(ws)["data"] == candle_json(0, now)
        # what a PostgreSQL restart looks like to the API: its LISTEN session dies
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'kirby_api_listener' AND datname = current_database()"
        )
        assert killed == 1
        # written and announced while the listener is (probably) down: its NOTIFY is lost
        await write_candles(conn, sid, range(1, 2), announce=True, start=now)
        client.blocking_portal.call(listener.wait_for_connection, 2)
        # delivered live (if it beat the loss) or by the catch-up from the event log:
        # either way exactly once, with its event id
        missed = receive(ws)
        assert missed["data"] == candle_json(1, now)
        assert missed["event_id"] == await conn.fetchval("SELECT max(id) FROM change_events")
        await write_candles(conn, sid, range(2, 3), announce=True, start=now)
        assert receive(ws)["data"] == candle_json(2, now)
    metrics = (await client.get("/metrics")).text
    assert "kirby_api_listen_reconnects_total 1.0" in metrics


async def test_a_schema_mismatch_is_an_internal_error_with_an_id(client, conn, catalog) -> None:
    """The server's own words (SQL, table names) stay in its log; the client gets an id."""
    sid = catalog["BTC/1m"]
    await conn.execute("ALTER TABLE candles RENAME TO candles_away")
    try:
        with await client.websocket_connect("/ws") as ws:
            assert subscribe(ws, [sid], history=3)["type"] == "success"
            error = receive(ws)  # where the history would have been
    finally:
        await conn.execute("ALTER TABLE candles_away RENAME TO candles")
    assert error["type"] == "error" and error["code"] == "internal_error", error
    assert error["message"].startswith("internal error; it has been logged with error id ")
    assert "candles" not in error["message"]
