"""/admin/api-keys: create (the key is shown once), list, revoke. Admin keys only.

Responses carry `Cache-Control: no-store` (a created key must not sit in a cache) and
`X-Content-Type-Options: nosniff` (key names are never rendered as anything but JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Router, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from msgspec import Meta

from kirby_api.auth import KeyVerifier, require_admin
from kirby_api.database import ConnectionPool
from kirby_api.errors import error_responses
from kirby_api.keys import ApiKey, create_key, list_keys, revoke_key
from kirby_api.routes.starlistings import ListMetadata
from kirby_api.ws.key_watch import KeyWatch


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=100,
            description="Who or what the key is for (1-100 printable characters; control "
            "characters, line and paragraph separators are refused).",
            examples=["research notebook"],
        ),
    ]
    admin: bool = False
    """Admin keys may manage keys."""
    expires_at: datetime | None = None
    """UTC if no offset is given; must be in the future. Null: never expires."""
    rate_limit_per_minute: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    """Null: the server default (KIRBY_API_RATE_LIMIT_PER_MINUTE)."""
    max_ws_connections: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    """Null: the server default (KIRBY_API_WS_MAX_CONNECTIONS_PER_KEY)."""


class CreatedKey(msgspec.Struct):
    key: str
    """The API key. It is shown this once and cannot be retrieved again."""
    api_key: ApiKey


class ApiKeysPage(msgspec.Struct):
    data: list[ApiKey]
    metadata: ListMetadata


@post(
    "/api-keys",
    summary="Create an API key",
    responses=error_responses(400, 401, 403, 429, 503),
)
async def create_api_key(
    data: JSONBody[NewKey], database: NamedDependency[ConnectionPool]
) -> CreatedKey:
    key, token = await create_key(
        database,
        data.name,
        admin=data.admin,
        expires_at=data.expires_at,
        rate_limit_per_minute=data.rate_limit_per_minute,
        max_ws_connections=data.max_ws_connections,
    )
    return CreatedKey(token, key)


@get("/api-keys", summary="List API keys", responses=error_responses(401, 403, 429, 503))
async def list_api_keys(database: NamedDependency[ConnectionPool]) -> ApiKeysPage:
    keys = await list_keys(database)
    return ApiKeysPage(keys, ListMetadata(len(keys)))


@delete(
    "/api-keys/{key_id:int}",
    summary="Revoke an API key",
    description="Takes effect at once on this API process (its open WebSockets close with "
    "4401) and, with KIRBY_REDIS_URL set, on every replica; without Redis, within "
    "KIRBY_API_KEY_CACHE_SECONDS (at least 1 s for open WebSockets) on the others. Revoking "
    "again changes nothing.",
    status_code=200,
    responses=error_responses(400, 401, 403, 404, 429, 503),
)
async def revoke_api_key(
    key_id: Annotated[int, PathParameter(ge=1, le=2**31 - 1)],
    database: NamedDependency[ConnectionPool],
    verifier: NamedDependency[KeyVerifier],
    key_watch: NamedDependency[KeyWatch],
) -> ApiKey:
    key = await revoke_key(database, key_id)
    verifier.forget(key_id)
    await key_watch.revoked(key_id)
    return key


admin_router = Router(
    "/admin",
    route_handlers=[create_api_key, list_api_keys, revoke_api_key],
    guards=[require_admin],
    tags=["admin"],
    response_headers=[
        ResponseHeader(name="Cache-Control", value="no-store"),
        ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ],
)
