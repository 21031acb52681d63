"""WebSocket connection caps, in total and per key: per process (`LocalCaps`, counted by
the hub) or across replicas (`SharedCaps`, leases in Redis; see `kirby_api.shared_state`).

`admit` decides whether one more connection may open and, if so, counts it; `release`
un-counts it when the socket is gone. The handler refuses with 1013 (total) or 4429 (key).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Literal, Protocol, runtime_checkable

from kirby_api.shared_state import SharedState, SharedStateUnavailable
from kirby_api.ws.hub import Hub

Refusal = Literal["server_full", "key_cap"]


@runtime_checkable  # Litestar checks injected values against the annotation
class Caps(Protocol):
    async def admit(self, connection: str, key_id: int | None, key_cap: int) -> Refusal | None: ...

    async def release(self, connection: str, key_id: int | None) -> None: ...


class LocalCaps:
    """This process's connections, as the hub counts them. `admit` never suspends, so the
    handler counts the connection in the hub before any other connection is admitted."""

    def __init__(self, hub: Hub, total: int) -> None:
        self._hub = hub
        self._total = total

    async def admit(self, connection: str, key_id: int | None, key_cap: int) -> Refusal | None:
        if len(self._hub.clients) >= self._total:
            return "server_full"
        if key_id is not None and self._hub.per_key[key_id] >= key_cap:
            return "key_cap"
        return None

    async def release(self, connection: str, key_id: int | None) -> None:
        return None  # the hub's disconnect un-counts it


class SharedCaps:
    """All replicas' connections: a lease per connection in Redis, renewed by `renew_forever`
    while this process holds it. `admit` raises `SharedStateUnavailable` without Redis."""

    def __init__(self, shared: SharedState, total: int) -> None:
        self._shared = shared
        self._total = total
        self._held: dict[str, int | None] = {}

    async def admit(self, connection: str, key_id: int | None, key_cap: int) -> Refusal | None:
        refused = await self._shared.acquire(connection, key_id, self._total, key_cap)
        if refused:
            return "server_full" if refused == 1 else "key_cap"
        self._held[connection] = key_id
        return None

    async def release(self, connection: str, key_id: int | None) -> None:
        self._held.pop(connection, None)
        with contextlib.suppress(SharedStateUnavailable):  # then its lease runs out
            await self._shared.release(connection, key_id)

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._shared.lease_seconds / 3)
            with contextlib.suppress(SharedStateUnavailable):  # logged once per outage
                await self._shared.renew(dict(self._held))


def new_connection_id() -> str:
    return secrets.token_hex(8)
