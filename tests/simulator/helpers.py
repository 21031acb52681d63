"""Small async helpers for talking to the simulator's WebSocket and REST endpoints."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from kirby_sim import SimulatorServer

GREETING = "Websocket connection established."


async def open_ws(sim: SimulatorServer) -> ClientConnection:
    """A connected client past the server's greeting."""
    ws = await connect(sim.ws_url, ping_interval=None)
    assert await asyncio.wait_for(ws.recv(), 5) == GREETING
    return ws


async def receive(ws: ClientConnection, within: float = 5.0) -> Any:
    """The next message, decoded; TimeoutError if none comes `within` seconds."""
    async with asyncio.timeout(within):
        return json.loads(await ws.recv())


async def subscribe(ws: ClientConnection, subscription: dict[str, Any]) -> Any:
    """Subscribe and return the acknowledgement (pushes before it are skipped)."""
    await ws.send(json.dumps({"method": "subscribe", "subscription": subscription}))
    return {"channel": "subscriptionResponse", "data": await next_on(ws, "subscriptionResponse")}


async def flush(ws: ClientConnection) -> None:
    """Skip everything the server sent before now (a ping's pong comes after it)."""
    await ws.send(json.dumps({"method": "ping"}))
    async with asyncio.timeout(5):
        while (await receive(ws))["channel"] != "pong":
            pass


async def next_on(ws: ClientConnection, channel: str, within: float = 5.0) -> Any:
    """The data of the next message on `channel`, skipping others."""
    async with asyncio.timeout(within):
        while True:
            message = await receive(ws)
            if message["channel"] == channel:
                return message["data"]


async def post_info(sim: SimulatorServer, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.base_url}/info", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()
