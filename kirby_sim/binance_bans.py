"""Binance's IP ban: a client that keeps calling after a 429 gets 418 until the ban ends.

Binance answers 429 (-1003) when an IP exceeds its request weight and warns that failing to
back off "will result in an automated IP ban (HTTP status 418)", bans lasting from 2
minutes up to 3 days for repeat offenders. Here: a request that meets a 429 while the
previous 429's Retry-After has not elapsed bans the IP for `FIRST_BAN_SECONDS`, doubling
with each ban up to `MAX_BAN_SECONDS`; while banned every Binance path answers 418 with
the ban's end in the message and Retry-After. Real seconds, like the weight limits.
Injected http_429 faults do not count (the fault middleware answers before this one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from kirby_sim.binance import error_response

FIRST_BAN_SECONDS = 120.0
MAX_BAN_SECONDS = 3 * 86_400.0

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BinanceBans:
    def __init__(
        self,
        prefixes: tuple[str, ...],
        others: tuple[str, ...],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Binance paths start with `prefixes` but not with `others` (OKX's /api/v5/ and
        Coinbase's /api/v3/brokerage/ share Binance's /api/)."""
        self.prefixes = prefixes
        self.others = others
        self._clock = clock
        self._backoff_until: dict[str, float] = {}
        self._banned_until: dict[str, float] = {}
        self._bans: dict[str, int] = {}

    def banned(self, client: str, now_ms: int) -> web.Response | None:
        left = self._banned_until.get(client, 0.0) - self._clock()
        if left <= 0:
            return None
        until_ms = now_ms + int(left * 1000)
        msg = (
            f"Way too many requests; IP({client}) banned until {until_ms}. "
            "Please use the websocket for live updates to avoid bans."
        )
        return error_response(-1003, msg, 418, {"Retry-After": str(math.ceil(left))})

    def observe(self, client: str, response: web.StreamResponse) -> bool:
        """Record a 429; True when it must become a ban (the client did not back off)."""
        if response.status != 429:
            return False
        now = self._clock()
        ignored_warning = self._backoff_until.get(client, 0.0) > now
        retry_after = float(response.headers.get("Retry-After", "1"))
        self._backoff_until[client] = now + retry_after
        if not ignored_warning:
            return False
        bans = self._bans.get(client, 0)
        self._bans[client] = bans + 1
        self._banned_until[client] = now + min(FIRST_BAN_SECONDS * 2**bans, MAX_BAN_SECONDS)
        return True

    def middleware(self, now_ms: Callable[[], int]) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def bans(request: web.Request, handler: _Handler) -> web.StreamResponse:
            path = request.path
            if not path.startswith(self.prefixes) or path.startswith(self.others):
                return await handler(request)
            client = request.remote or "unknown"
            refused = self.banned(client, now_ms())
            if refused is not None:
                return refused
            response = await handler(request)
            if self.observe(client, response):
                banned = self.banned(client, now_ms())
                assert banned is not None
                return banned
            return response

        return bans
