"""WebSocket work spends the key's rate-limit budget, the same one its REST requests spend:
subscribe/unsubscribe 1 each, history 1 per started 1000 rows; over budget an `error`
message, then close 4429."""

from __future__ import annotations

import pytest
from litestar.exceptions import WebSocketDisconnect

from kirby_api.keys import create_key
from tests.api.conftest import bearer, write_candles

TIMEOUT = 10


def receive(ws) -> dict:
    return ws.receive_json(timeout=TIMEOUT)


def subscribe(ws, ids, **extra) -> dict:
    ws.send_json({"action": "subscribe", "starlisting_ids": ids, **extra})
    return receive(ws)


async def test_actions_over_budget_get_an_error_then_4429(api, conn, catalog) -> None:
    _, token = await create_key(conn, "three a minute", rate_limit_per_minute=3)
    sid = catalog["BTC/1m"]
    async with api() as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            assert subscribe(ws, [sid])["type"] == "success"
            ws.send_json({"action": "unsubscribe", "starlisting_ids": [sid]})
            assert receive(ws)["type"] == "success"
            for _ in range(5):  # pings are free
                ws.send_json({"action": "ping"})
                assert receive(ws)["type"] == "pong"
            assert subscribe(ws, [sid])["type"] == "success"
            error = subscribe(ws, [sid])
            with pytest.raises(WebSocketDisconnect) as closed:
                receive(ws)
        metrics = (await client.get("/metrics")).text
    message = "rate limit of 3 requests per minute exceeded; retry in 20 s"
    assert error == {
        "type": "error",
        "code": "rate_limited",
        "message": message,
        "action": "subscribe",
    }
    assert (closed.value.code, closed.value.detail) == (4429, message)
    assert 'kirby_api_ws_closed_total{reason="rate_limited"} 1.0' in metrics
    assert "kirby_api_rate_limited_total 1.0" in metrics


async def test_history_costs_one_per_started_thousand_rows_shared_with_rest(
    api,
    conn,
    catalog,
    shared,
) -> None:
    _, token = await create_key(conn, "ten a minute", rate_limit_per_minute=10)
    stars = [catalog["BTC/1m"], catalog["BTC/15m"]]
    for sid in stars:
        await write_candles(conn, sid, range(3))
    async with api(**shared) as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            # 2 series x 1000 rows asked: 1 for the frame + 2 for the rows
            assert subscribe(ws, stars, history=1000)["type"] == "success"
            assert [receive(ws)["count"] for _ in stars] == [3, 3]
            # 2 x 1 row: 1 + 1
            assert subscribe(ws, stars, history=1)["type"] == "success"
            assert [receive(ws)["count"] for _ in stars] == [1, 1]
            response = await client.get("/starlistings", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["RateLimit-Remaining"] == str(10 - 3 - 2 - 1)


async def test_a_subscribe_costing_more_than_the_whole_budget(
    api,
    conn,
    catalog,
    shared,
) -> None:
    _, token = await create_key(conn, "two a minute", rate_limit_per_minute=2)
    stars = [catalog["BTC/1m"], catalog["BTC/15m"], catalog["BTC/4h"]]
    async with api(**shared) as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            error = subscribe(ws, stars, history=1000)
            with pytest.raises(WebSocketDisconnect) as closed:
                receive(ws)
    message = "this action costs 3 requests, more than the whole budget of 2 per minute"
    assert (error["code"], error["message"]) == ("rate_limited", message)
    assert (closed.value.code, closed.value.detail) == (4429, message)


async def test_without_auth_the_client_address_pays(api, catalog) -> None:
    async with api(api_auth_enabled=False, api_rate_limit_per_minute=2) as client:
        assert (await client.get("/starlistings")).status_code == 200
        with await client.websocket_connect("/ws") as ws:
            assert subscribe(ws, [catalog["BTC/1m"]])["type"] == "success"
            assert subscribe(ws, [catalog["BTC/1m"]])["code"] == "rate_limited"
            with pytest.raises(WebSocketDisconnect) as closed:
                receive(ws)
    assert closed.value.code == 4429
