"""A slow consumer closed with 4408 is really gone: its socket is aborted after the close
timeout, and the hub (the per-key cap) counts it until then (real sockets, uvicorn)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kirby_api.keys import create_key
from tests.api.conftest import write_candles

_ESTABLISHED = "01"


def _established(local_port: int, remote_port: int) -> bool:
    """Whether the kernel holds an established TCP connection local_port -> remote_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            ports = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
            if ports == (local_port, remote_port) and state == _ESTABLISHED:
                return True
    return False


async def _slow_client(base: str, token: str) -> tuple[ClientConnection, int]:
    """A client that will read nothing (tiny receive buffer, one-message queue); its port."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    host, port = base.split(":")
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    client = await connect(
        f"ws://{base}/ws?api_key={token}", sock=raw, max_queue=1, compression=None
    )
    return client, raw.getsockname()[1]


async def _connections(http: httpx.AsyncClient) -> float:
    metrics = (await http.get("/metrics")).text
    line = next(x for x in metrics.splitlines() if x.startswith("kirby_api_ws_connections "))
    return float(line.split()[1])


async def test_closed_slow_consumer_is_aborted_and_counted_until_gone(
    served, conn, catalog
) -> None:
    stars = [v for k, v in catalog.items() if "/" in k]
    for sid in stars:
        await write_candles(conn, sid, range(1000))
    _, token = await create_key(conn, "slow", max_ws_connections=1)
    async with (
        served(api_auth_enabled=True, api_ws_send_queue=5) as base,
        httpx.AsyncClient(base_url=f"http://{base}") as http,
    ):
        server_port = int(base.split(":")[1])
        slow, slow_port = await _slow_client(base, token)
        assert _established(server_port, slow_port)
        subscribe = {"action": "subscribe", "starlisting_ids": stars, "history": 1000}
        # ~1 MB of history per subscribe: buffers fill, then the 5-message queue overflows
        for _ in range(40):
            try:
                await slow.send(json.dumps(subscribe))
            except ConnectionClosed:
                break

        # The client never reads again. The hub stops counting it only once the server
        # has let go of the socket (without the abort, the socket stays forever).
        deadline = time.monotonic() + 15
        while await _connections(http) != 0:
            assert time.monotonic() < deadline, "the slow consumer was never let go"
            await asyncio.sleep(0.05)
        assert not _established(server_port, slow_port)
        metrics = (await http.get("/metrics")).text
        assert 'kirby_api_ws_closed_total{reason="slow_consumer"} 1.0' in metrics

        slow.transport.abort()

        # its key (capped at one connection) may connect again
        async with connect(f"ws://{base}/ws?api_key={token}", compression=None) as again:
            await again.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(again.recv(), 10))["type"] == "pong"
