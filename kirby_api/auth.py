"""Who is calling: API-key authentication (middleware), the admin guard.

A key comes as `Authorization: Bearer <key>`, as `X-API-Key: <key>`, or, for WebSockets
only (browsers cannot set headers there), as the `api_key` query parameter; another
Authorization scheme (`Basic`, `Token`) is refused naming it. A verified key is trusted for
`api_key_cache_seconds` before it is read again (unknown keys are remembered too, so garbage
cannot hammer the database); revoking through this process takes effect at once, elsewhere
within that time. Both caches are bounded LRUs, apart, so a flood of random keys only
evicts other unknown keys, never a valid one. Each authenticated request bumps the key's
in-memory usage counter.

HTTP requests without a valid key fail with 401 and `WWW-Authenticate: Bearer`. Failures
are budgeted per client address (`api_auth_failures_per_minute`, a token bucket, per
process or, with a Redis URL, across replicas): an
address over budget gets 429 with Retry-After, before any key lookup, until its budget
refills; only keys this process verified recently still pass from it, so a flood from a
shared address does not lock out its valid clients. A WebSocket handshake is never refused
with an HTTP status: the failure is put on the connection (`socket.auth`) and the WebSocket
handler accepts and closes with code 4401, which browsers can see. With auth switched off
every caller is `ANONYMOUS` and admin routes are open (local use).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.types import ASGIApp

from kirby_api.database import ConnectionPool
from kirby_api.errors import Forbidden, RateLimited, Unauthorized, shorten
from kirby_api.keys import ApiKey, digest, find_key
from kirby_api.ratelimit import Limiter
from kirby_api.usage import UsageCounter

EXCLUDE_FROM_AUTH = "exclude_from_auth"
_MAX_CACHED = 10_000
"""Entries in each of the two key caches (found keys, unknown keys)."""
HOW_TO_SEND = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


class Anonymous:
    """The caller when authentication is off."""

    id = None
    admin = True
    rate_limit_per_minute = None
    max_ws_connections = None

    def __repr__(self) -> str:
        return "ANONYMOUS"


ANONYMOUS = Anonymous()
Principal = ApiKey | Anonymous


class _Lru:
    """Digest -> (trusted until, key or None), at most `size` entries, least recent out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[bytes, tuple[float, ApiKey | None]] = OrderedDict()

    def get(self, hashed: bytes, now: float) -> tuple[float, ApiKey | None] | None:
        entry = self.entries.get(hashed)
        if entry is None or entry[0] <= now:
            return None
        self.entries.move_to_end(hashed)
        return entry

    def put(self, hashed: bytes, entry: tuple[float, ApiKey | None]) -> None:
        self.entries[hashed] = entry
        self.entries.move_to_end(hashed)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)


class KeyVerifier:
    def __init__(self, database: ConnectionPool, cache_seconds: float) -> None:
        self._database = database
        self._cache_seconds = cache_seconds
        self._found = _Lru(_MAX_CACHED)
        self._unknown = _Lru(_MAX_CACHED)

    async def verify(self, token: str | None) -> ApiKey:
        if not token:
            raise Unauthorized(f"missing API key: {HOW_TO_SEND} (WebSocket: ?api_key=<key>)")
        key = await self._lookup(token)
        if key is None:
            raise Unauthorized("unknown API key", key_given=True)
        refusal = key.refusal(datetime.now(UTC))
        if refusal is not None:
            raise Unauthorized(refusal, key_given=True)
        return key

    async def _lookup(self, token: str) -> ApiKey | None:
        hashed = digest(token)
        now = time.monotonic()
        cached = self._found.get(hashed, now) or self._unknown.get(hashed, now)
        if cached is not None:
            return cached[1]
        key = await find_key(self._database, token)
        cache = self._unknown if key is None else self._found
        cache.put(hashed, (now + self._cache_seconds, key))
        return key

    def trusted(self, token: str | None) -> ApiKey | None:
        """The key behind `token` if this process verified it recently and it is still live
        (no database read): what an address over its failure budget may still use."""
        cached = self._found.get(digest(token), time.monotonic()) if token else None
        key = cached[1] if cached else None
        return key if key is not None and key.refusal(datetime.now(UTC)) is None else None

    def forget(self, key_id: int) -> None:
        """Drop a key from the cache (after revoking it here)."""
        for hashed, (_, key) in list(self._found.entries.items()):
            if key is not None and key.id == key_id:
                del self._found.entries[hashed]


def presented_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization")
    scheme, _, credentials = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    token = connection.headers.get("x-api-key")
    if token:
        return token.strip()
    if connection.scope["type"] == "websocket":
        return connection.query_params.get("api_key")
    if scheme:
        raise Unauthorized(
            f"unsupported authorization scheme {shorten(scheme)!r}: {HOW_TO_SEND}",
            key_given=True,
        )
    return None


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    def __init__(
        self,
        app: ASGIApp,
        verifier: KeyVerifier,
        usage: UsageCounter,
        failures: Limiter,
        enabled: bool,
        exclude: list[str],
    ) -> None:
        super().__init__(app, exclude=exclude, exclude_from_auth_key=EXCLUDE_FROM_AUTH)
        self._verifier = verifier
        self._usage = usage
        self._failures = failures
        self._enabled = enabled

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        if not self._enabled:
            return AuthenticationResult(user=ANONYMOUS, auth=None)
        if connection.scope["type"] == "websocket":
            try:
                key = await self._verifier.verify(presented_token(connection))
            except Unauthorized as refused:
                return AuthenticationResult(user=None, auth=refused)
        else:
            key = await self._verify_budgeted(connection)
        self._usage.count(key.id)
        return AuthenticationResult(user=key, auth=None)

    async def _verify_budgeted(self, connection: ASGIConnection) -> ApiKey:
        """Verify an HTTP request's key; its address spends from its failure budget."""
        address = connection.client.host if connection.client else "unknown"
        token = presented_token(connection)
        key = self._verifier.trusted(token)
        if key is not None:  # verified here recently: passes whatever its address's budget
            return key
        await self._spend_failure(address, spend=False)  # over budget: no lookup at all
        try:
            return await self._verifier.verify(token)
        except Unauthorized:
            await self._spend_failure(address, spend=True)
            raise

    async def _spend_failure(self, address: str, *, spend: bool) -> None:
        try:
            await self._failures.check(address, None, spend=spend)
        except RateLimited as over:
            limit = self._failures.default_per_minute
            retry = over.headers["Retry-After"]
            raise RateLimited(
                f"more than {limit} requests without a valid API key per minute from "
                f"{shorten(address)}; retry in {retry} s",
                {"Retry-After": retry},
            ) from None


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the admin routes."""
    user = connection.user
    if not getattr(user, "admin", False):
        raise Forbidden(
            f"API key {user.prefix}... is not an admin key; admin routes need a key created "
            "with `kirby apikey create --admin`"
        )
