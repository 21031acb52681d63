"""Per-key rate limits (REST and WebSocket): a GCRA token bucket in memory, with headers.

Why not Litestar's `RateLimitMiddleware`: it keeps every request timestamp of the window in
its store and re-encodes that list as JSON on each request (O(limit) work per request at
1,200/min), takes one global lock, and answers 429 without `Retry-After`. This one keeps a
single float per caller (the GCRA "theoretical arrival time"), so a check is O(1), and it
sends `Retry-After` plus the same `RateLimit-Limit/-Remaining/-Reset/-Policy` headers.

The budget is `limit` requests per minute, usable as a burst, refilling continuously. The
caller (`caller_of`) is the API key (its own `rate_limit_per_minute` overrides the default)
or, with authentication off, the client address. A REST request costs 1; the WebSocket
handler charges its actions to the same budget (`cost`). Limits are per API process, or,
with a Redis URL, across all replicas: `kirby_api.shared_state` runs the same arithmetic as
one Redis script on the Redis server's clock (`fits` and `verdict` are shared).
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol, runtime_checkable

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from kirby_api.errors import RateLimited

EXCLUDE_FROM_RATE_LIMIT = "exclude_from_rate_limit"
PERIOD_SECONDS = 60.0
_SWEEP_EVERY = 10_000


@runtime_checkable  # Litestar checks injected values against the annotation
class Limiter(Protocol):
    """A GCRA budget per caller: `RateLimiter` (this process) or, with a Redis URL,
    `kirby_api.shared_state.SharedLimiter` (all replicas)."""

    default_per_minute: int

    async def check(
        self, caller: Any, per_minute: int | None, cost: int = 1, *, spend: bool = True
    ) -> dict[str, str]:
        """Count `cost` requests (`spend=False`: only ask); headers to send, or `RateLimited`
        if over budget."""
        ...


class RateLimiter:
    """The in-process `Limiter`: one "theoretical arrival time" per caller in a dict."""

    def __init__(self, default_per_minute: int) -> None:
        self.default_per_minute = default_per_minute
        self._arrival: dict[Any, float] = {}
        self._checks = 0

    async def check(
        self, caller: Any, per_minute: int | None, cost: int = 1, *, spend: bool = True
    ) -> dict[str, str]:
        limit = per_minute or self.default_per_minute
        interval = PERIOD_SECONDS / limit
        now = time.monotonic()
        arrival = max(self._arrival.get(caller, now), now)
        self._sweep(now)
        allowed = fits(limit, cost, arrival - now)
        if allowed and spend:
            self._arrival[caller] = arrival + cost * interval
        return verdict(limit, cost, arrival - now, allowed)

    def _sweep(self, now: float) -> None:
        """Forget callers whose bucket is full again (they hold no state worth keeping)."""
        self._checks += 1
        if self._checks % _SWEEP_EVERY == 0:
            self._arrival = {k: t for k, t in self._arrival.items() if t > now}


def fits(limit: int, cost: int, ahead: float) -> bool:
    """Whether `cost` more requests fit when the caller's arrival time is `ahead` seconds in
    the future (the Redis script decides the same with the same numbers)."""
    return cost <= limit and ahead + cost * PERIOD_SECONDS / limit <= PERIOD_SECONDS + 1e-9


def verdict(limit: int, cost: int, ahead: float, allowed: bool) -> dict[str, str]:
    """The headers of an allowed check, or `RateLimited` saying when to retry."""
    interval = PERIOD_SECONDS / limit
    if cost > limit:
        raise RateLimited(
            f"this action costs {cost} requests, more than the whole budget of {limit} per minute",
            _headers(limit, 0, ahead),
        )
    if not allowed:
        retry = math.ceil(ahead + cost * interval - PERIOD_SECONDS)
        headers = _headers(limit, 0, ahead) | {"Retry-After": str(retry)}
        raise RateLimited(
            f"rate limit of {limit} requests per minute exceeded; retry in {retry} s", headers
        )
    ahead += cost * interval
    remaining = int((PERIOD_SECONDS - ahead) / interval + 1e-9)
    return _headers(limit, remaining, ahead)


def caller_of(user: Any, client: tuple[str, int] | None) -> tuple[str, Any]:
    """Whose budget a request spends: its API key's, else (auth off) its address's."""
    key_id = getattr(user, "id", None)
    if key_id is not None:
        return ("key", key_id)
    return ("address", client[0] if client else "unknown")


def _headers(limit: int, remaining: int, refill_seconds: float) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(max(0, math.ceil(refill_seconds))),
        "RateLimit-Policy": f"{limit};w={int(PERIOD_SECONDS)}",
    }


class RateLimitMiddleware(ASGIMiddleware):
    """Runs after authentication: `scope["user"]` says who is calling."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = EXCLUDE_FROM_RATE_LIMIT

    def __init__(self, limiter: Limiter, public_prefixes: tuple[str, ...]) -> None:
        self._limiter = limiter
        # by path: the OpenAPI routes are Litestar's own, so they carry no opt key
        self.should_bypass_for_scope = lambda scope: scope["path"].startswith(public_prefixes)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user = scope.get("user")
        caller = caller_of(user, scope.get("client"))
        headers = await self._limiter.check(caller, getattr(user, "rate_limit_per_minute", None))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    mutable[name] = value
            await send(message)

        await next_app(scope, receive, send_with_headers)
