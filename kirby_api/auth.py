"""Who is calling: API-key authentication (middleware), the admin guard.

A key comes as `Authorization: Bearer <key>`, as `X-API-Key: <key>`, or, for WebSockets
only (browsers cannot set headers there), as the `api_key` query parameter. A verified key
is trusted for `api_key_cache_seconds` before it is read again (unknown keys are remembered
too, so garbage cannot hammer the database); revoking through this process takes effect at
once, elsewhere within that time. Each authenticated request bumps the key's in-memory
usage counter.

HTTP requests without a valid key fail with 401. A WebSocket handshake is never refused
with an HTTP status: the failure is put on the connection (`socket.auth`) and the WebSocket
handler accepts and closes with code 4401, which browsers can see. With auth switched off
every caller is `ANONYMOUS` and admin routes are open (local use).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.types import ASGIApp

from kirby_api.database import Database
from kirby_api.errors import Forbidden, Unauthorized
from kirby_api.keys import ApiKey, digest, find_key
from kirby_api.usage import UsageCounter

EXCLUDE_FROM_AUTH = "exclude_from_auth"
_MAX_CACHED = 10_000


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


class KeyVerifier:
    def __init__(self, database: Database, cache_seconds: float) -> None:
        self._database = database
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}

    async def verify(self, token: str | None) -> ApiKey:
        if not token:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
                "(WebSocket: ?api_key=<key>)"
            )
        key = await self._lookup(token)
        if key is None:
            raise Unauthorized("unknown API key")
        refusal = key.refusal(datetime.now(UTC))
        if refusal is not None:
            raise Unauthorized(refusal)
        return key

    async def _lookup(self, token: str) -> ApiKey | None:
        hashed = digest(token)
        now = time.monotonic()
        cached = self._cache.get(hashed)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await find_key(self._database, token)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[hashed] = (now + self._cache_seconds, key)
        return key

    def forget(self, key_id: int) -> None:
        """Drop a key from the cache (after revoking it here)."""
        self._cache = {h: v for h, v in self._cache.items() if v[1] is None or v[1].id != key_id}


def presented_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    token = connection.headers.get("x-api-key")
    if token:
        return token.strip()
    if connection.scope["type"] == "websocket":
        return connection.query_params.get("api_key")
    return None


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    def __init__(
        self,
        app: ASGIApp,
        verifier: KeyVerifier,
        usage: UsageCounter,
        enabled: bool,
        exclude: list[str],
    ) -> None:
        super().__init__(app, exclude=exclude, exclude_from_auth_key=EXCLUDE_FROM_AUTH)
        self._verifier = verifier
        self._usage = usage
        self._enabled = enabled

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        if not self._enabled:
            return AuthenticationResult(user=ANONYMOUS, auth=None)
        token = presented_token(connection)
        if connection.scope["type"] == "websocket":
            try:
                key = await self._verifier.verify(token)
            except Unauthorized as refused:
                return AuthenticationResult(user=None, auth=refused)
        else:
            key = await self._verifier.verify(token)
        self._usage.count(key.id)
        return AuthenticationResult(user=key, auth=None)


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the admin routes."""
    user = connection.user
    if not getattr(user, "admin", False):
        raise Forbidden(
            f"API key {user.prefix}... is not an admin key; admin routes need a key created "
            "with `kirby apikey create --admin`"
        )
