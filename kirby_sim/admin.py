"""The simulator's own HTTP endpoints, for tests driving a simulator in another process.

    GET    /_sim/state    clock, connections, subscriptions, request and push counts,
                          faults injected so far (by kind) and faults pending
    POST   /_sim/faults   one fault spec or {"faults": [spec, ...]}; answers the state
    DELETE /_sim/faults   forget pending faults and end stalls; answers the state

Fault specs (see `faults.FaultInjector`):
    {"kind": "drop_ws"}
    {"kind": "stall", "seconds": 5, "coins": ["BTC"]}          coins optional (all)
    {"kind": "http_429", "count": 3, "retry_after": 2}
    {"kind": "http_5xx", "count": 2, "status": 502}
    {"kind": "malformed", "target": "ws" | "http", "count": 1,
     "variant": "bad_json" | "non_numeric_price" | "high_below_low" | "unknown_coin"}
    {"kind": "book_gap", "count": 1, "exchange": "binance" | "bybit" | "okx" | "coinbase"}
                                                               exchange optional (any)
    {"kind": "book_restart"}                                   Bybit books restart (u = 1)
A bad spec answers 400 {"error": "..."} and injects nothing. These paths never get
injected faults themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kirby_sim.faults import FaultInjector

PREFIX = "/_sim"


def admin_routes(faults: FaultInjector, state: Callable[[], dict[str, Any]]) -> list[web.RouteDef]:
    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state())

    async def post_faults(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            specs = body.get("faults", [body]) if isinstance(body, dict) else None
            if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
                raise ValueError('expected a fault object or {"faults": [...]}')
            injections = [faults.prepare(spec) for spec in specs]
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for inject in injections:
            inject()
        return web.json_response(state())

    async def delete_faults(request: web.Request) -> web.Response:
        faults.clear()
        return web.json_response(state())

    return [
        web.get(f"{PREFIX}/state", get_state),
        web.post(f"{PREFIX}/faults", post_faults),
        web.delete(f"{PREFIX}/faults", delete_faults),
    ]
