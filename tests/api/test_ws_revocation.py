"""A live WebSocket ends when its key dies: revoked, expired or deleted by any process.

The revocation is written straight into the database, as another API process (or
`kirby apikey revoke`) would: this process's key cache never hears of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from litestar.exceptions import WebSocketDisconnect

from kirby_api.keys import create_key, revoke_key

TIMEOUT = 10


def _ping(ws) -> None:
    ws.send_json({"action": "ping"})
    assert ws.receive_json(timeout=TIMEOUT)["type"] == "pong"


def _closed(ws) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_json(timeout=TIMEOUT)  # heartbeats may come first
    return closed.value


async def test_a_key_revoked_elsewhere_closes_its_sockets_4401(api, conn) -> None:
    key, token = await create_key(conn, "revoked while streaming")
    async with api(api_key_cache_seconds=0) as client:  # re-checked every second
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            _ping(ws)
            await revoke_key(conn, key.id)
            closed = _closed(ws)
        metrics = (await client.get("/metrics")).text
    assert closed.code == 4401
    assert closed.detail.startswith(f"API key {key.prefix}... was revoked at ")
    assert 'kirby_api_ws_closed_total{reason="key_refused"} 1.0' in metrics


async def test_every_socket_of_the_dead_key_closes_and_only_those(api, conn) -> None:
    key, token = await create_key(conn, "revoked")
    _, other = await create_key(conn, "still valid")
    async with api(api_key_cache_seconds=0) as client:
        with (
            await client.websocket_connect(f"/ws?api_key={token}") as first,
            await client.websocket_connect(f"/ws?api_key={token}") as second,
            await client.websocket_connect(f"/ws?api_key={other}") as third,
        ):
            for ws in (first, second, third):
                _ping(ws)
            await revoke_key(conn, key.id)
            assert [_closed(ws).code for ws in (first, second)] == [4401, 4401]
            _ping(third)


async def test_a_deleted_key_closes_its_sockets_4401(api, conn) -> None:
    key, token = await create_key(conn, "deleted while streaming")
    async with api(api_key_cache_seconds=0) as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            _ping(ws)
            await conn.execute("DELETE FROM api_keys WHERE id = $1", key.id)
            closed = _closed(ws)
    assert (closed.code, closed.detail) == (4401, f"API key {key.prefix}... was deleted")


async def test_a_key_expiring_closes_its_sockets_at_its_expiry(api, conn) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    key, token = await create_key(conn, "expiring", expires_at=expires_at)
    # a long cache: the expiry is known from the key itself, no re-check needed
    async with api(api_key_cache_seconds=3600) as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            _ping(ws)
            closed = _closed(ws)
    assert datetime.now(UTC) >= expires_at
    assert closed.code == 4401
    assert closed.detail == f"API key {key.prefix}... expired at {expires_at:%Y-%m-%dT%H:%M:%SZ}"


async def test_a_live_key_keeps_its_socket(api, conn) -> None:
    _, token = await create_key(conn, "alive")
    async with api(api_key_cache_seconds=0, api_ws_heartbeat_seconds=0.5) as client:
        with await client.websocket_connect(f"/ws?api_key={token}") as ws:
            # several re-checks pass (one a second) while heartbeats keep coming
            beats = [ws.receive_json(timeout=TIMEOUT)["type"] for _ in range(5)]
            _ping(ws)
    assert beats == ["ping"] * 5
