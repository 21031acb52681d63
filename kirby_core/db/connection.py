"""`connect`: the one way Kirby opens a PostgreSQL connection outside the API's pool.

Every connection gets the same session: UTC (so text and COPY output of `timestamptz` do not
depend on the server's zone), an `application_name` that says who holds it in
`pg_stat_activity`, and a bound on connecting. A connect that fails raises
`StorageUnavailable` or `StorageRefused` (`kirby_core.db.errors`) naming the server, never an
asyncpg or socket error. `server_settings` gives the settings the API's pool passes too.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from kirby_core.db.errors import DRIVER_ERRORS, storage_error
from kirby_core.db.urls import redact

CONNECT_TIMEOUT_SECONDS = 10.0


def server_settings(application_name: str = "kirby") -> dict[str, str]:
    return {"timezone": "UTC", "application_name": application_name}


async def connect(
    url: str,
    *,
    application_name: str = "kirby",
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    **options: Any,
) -> asyncpg.Connection:
    """A new connection to `url`; `connect_timeout` bounds connecting (not the queries)."""
    try:
        return await asyncpg.connect(
            url,
            timeout=connect_timeout,
            server_settings=server_settings(application_name),
            **options,
        )
    except DRIVER_ERRORS as exc:
        raise storage_error(exc, f"cannot connect to {redact(url)}") from exc
