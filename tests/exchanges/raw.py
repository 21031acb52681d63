"""Raw requests to the simulator, bypassing the adapters: the reference to compare against."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import aiohttp

from kirby_sim import SimulatorServer


async def post_info(sim: SimulatorServer, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.base_url}/info", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return json.loads(await response.text(), parse_float=Decimal)


async def get_json(sim: SimulatorServer, path: str, params: dict[str, Any]) -> Any:
    query = {k: str(v) for k, v in params.items()}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim.base_url}{path}", params=query) as response,
    ):
        assert response.status == 200, await response.text()
        return json.loads(await response.text(), parse_float=Decimal)
