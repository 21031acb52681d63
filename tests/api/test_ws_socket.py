"""/ws over a real socket (uvicorn on loopback): what only a real network shows.

- a client that stops reading fills its TCP buffers and then its send queue; the server
  disconnects it (4408) while another client keeps getting live rows on time;
- a refused connection is an accepted WebSocket closed with a code, never an HTTP 403.
"""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import candle_json, write_candles


async def _slow_client(base: str) -> ClientConnection:
    """A client that reads nothing: a tiny receive buffer and a one-message queue."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    host, port = base.split(":")
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    return await connect(f"ws://{base}/ws", sock=raw, max_queue=1, compression=None)


async def test_slow_consumer_is_disconnected_without_delaying_others(served, conn, catalog) -> None:
    stars = [v for k, v in catalog.items() if "/" in k]
    for sid in stars:
        await write_candles(conn, sid, range(1000))
    async with served(api_ws_send_queue=5) as base:
        fast = await connect(f"ws://{base}/ws", compression=None)
        await fast.send(json.dumps({"action": "subscribe", "starlisting_ids": [catalog["BTC/1m"]]}))
        assert json.loads(await fast.recv())["type"] == "success"

        slow = await _slow_client(base)
        subscribe = {"action": "subscribe", "starlisting_ids": stars, "history": 1000}
        # ~1 MB of history per subscribe: buffers fill, then the 5-message queue overflows
        for _ in range(40):
            try:
                await slow.send(json.dumps(subscribe))
            except ConnectionClosed:
                break

        await write_candles(conn, catalog["BTC/1m"], range(1000, 1001), announce=True)
        live = json.loads(await asyncio.wait_for(fast.recv(), timeout=30))
        assert live["data"] == candle_json(1000)

        received = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.recv(), timeout=30)
                received += 1
        assert received < 40 * 8  # it was cut off, not served everything
        if closed.value.rcvd is not None:  # the close frame got through the full buffers
            assert closed.value.rcvd.code == 4408

        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            metrics = (await http.get("/metrics")).text
        assert 'kirby_api_ws_closed_total{reason="slow_consumer"} 1.0' in metrics
        assert "kirby_api_ws_connections 1.0" in metrics  # the fast client is still there
        await fast.close()


async def test_refusals_are_close_codes_not_http_errors(served) -> None:
    async with served(api_ws_max_connections=1) as base:
        first = await connect(f"ws://{base}/ws", compression=None)
        second = await connect(f"ws://{base}/ws", compression=None)  # the handshake succeeds
        with pytest.raises(ConnectionClosed) as closed:
            await second.recv()
        assert closed.value.rcvd.code == 1013
        assert "server at its limit of 1 connections" in closed.value.rcvd.reason
        await first.close()
