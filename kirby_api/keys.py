"""API keys in the database: create (shown once), list, revoke, look up by the key itself.

A key is `kirby_` + 43 url-safe characters (256 random bits). Only its SHA-256 digest is
stored: with that much entropy a slow password hash adds nothing, and the digest lets a
request find its key through a unique index. Listings show the first 12 characters
(`prefix`) so people can tell keys apart. Revocation is a timestamp, never a delete, so
usage history stays. Names are printable: control characters, which would garble a
terminal or a page listing keys, are refused. Used by the API (admin routes,
authentication) and `kirby apikey`; works on anything with asyncpg's `fetch`/`fetchrow`
(a connection, or the API's Database).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from kirby_api.errors import InvalidParameter
from kirby_core.db.errors import arguments_named
from kirby_core.errors import InvalidRequest, NotFound
from kirby_core.logs import CONTROL, escape

TOKEN_PREFIX = "kirby_"
PREFIX_CHARS = 12


class Queryable(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...


class ApiKey(msgspec.Struct, frozen=True):
    """A stored key, without the secret."""

    id: int
    name: str
    prefix: str
    admin: bool
    rate_limit_per_minute: int | None
    """Requests per minute; null: the server default."""
    max_ws_connections: int | None
    """WebSocket connections at once; null: the server default."""
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    """As of the last usage flush (counters are written in batches)."""
    request_count: int

    def refusal(self, now: datetime) -> str | None:
        """Why this key may not be used at `now`, or None."""
        if self.revoked_at is not None:
            return f"API key {self.prefix}... was revoked at {self.revoked_at:%Y-%m-%dT%H:%M:%SZ}"
        if self.expires_at is not None and self.expires_at <= now:
            return f"API key {self.prefix}... expired at {self.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        return None


_COLUMNS = (
    "id, name, prefix, admin, rate_limit_per_minute, max_ws_connections, created_at,"
    " expires_at, revoked_at, last_used_at, request_count"
)

_INSERTED = (
    "name",
    "prefix",
    "key_hash",
    "admin",
    "expires_at",
    "rate_limit_per_minute",
    "max_ws_connections",
)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _key(record: Any) -> ApiKey:
    return ApiKey(*record)


async def create_key(
    db: Queryable,
    name: str,
    *,
    admin: bool = False,
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
    max_ws_connections: int | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key; returns it with the token, which is never retrievable again."""
    if bad := CONTROL.search(name):
        raise InvalidParameter(
            "name",
            f"name '{escape(name)[:100]}' contains the control character "
            f"{escape(bad.group())}; use printable characters",
            "printable characters (no C0/C1 controls, no line or paragraph separators)",
        )
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= datetime.now(UTC):
            raise InvalidRequest(
                f"expires_at {expires_at:%Y-%m-%dT%H:%M:%SZ} is in the past; give a future time"
            )
    token = new_token()
    with arguments_named(_INSERTED):
        record = await db.fetchrow(
            f"""INSERT INTO api_keys ({", ".join(_INSERTED)})
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}""",  # noqa: S608
            name,
            token[:PREFIX_CHARS],
            digest(token),
            admin,
            expires_at,
            rate_limit_per_minute,
            max_ws_connections,
        )
    return _key(record), token


async def list_keys(db: Queryable) -> list[ApiKey]:
    return [_key(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")]  # noqa: S608


async def revoke_key(db: Queryable, key_id: int) -> ApiKey:
    """Revoke a key (again is a no-op that keeps the first revocation time)."""
    record = await db.fetchrow(
        f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE id = $1 RETURNING {_COLUMNS}""",  # noqa: S608
        key_id,
    )
    if record is None:
        raise NotFound(f"unknown API key id {key_id}")
    return _key(record)


async def find_key(db: Queryable, token: str) -> ApiKey | None:
    record = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1",  # noqa: S608
        digest(token),
    )
    return None if record is None else _key(record)


async def get_keys(db: Queryable, key_ids: list[int]) -> list[ApiKey]:
    """The keys of these ids that exist."""
    query = f"SELECT {_COLUMNS} FROM api_keys WHERE id = ANY($1::int[])"  # noqa: S608
    return [_key(r) for r in await db.fetch(query, key_ids)]


async def add_usage(db: Queryable, counts: dict[int, int], last_used: dict[int, datetime]) -> None:
    """Advance request counters of many keys in one statement."""
    ids = list(counts)
    await db.fetch(
        """UPDATE api_keys k SET request_count = k.request_count + u.n,
               last_used_at = greatest(k.last_used_at, u.at)
           FROM unnest($1::int[], $2::bigint[], $3::timestamptz[]) AS u(id, n, at)
           WHERE k.id = u.id""",
        ids,
        [counts[i] for i in ids],
        [last_used[i] for i in ids],
    )
