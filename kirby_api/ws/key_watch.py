"""Ends WebSocket sessions whose key died (revoked, expired, deleted) on any API process.

A key is verified once, at the handshake; REST requests are re-verified each time, a
WebSocket is not. So every open session registers its key here, and one loop per API
process re-reads all registered keys in one query every `api_key_cache_seconds` (at least
every second) from the database, where every process and `kirby apikey revoke` write. A
dead key resolves the future of each of its sessions with the reason; the handler closes
them with 4401. A key's known expiry is timed by the session itself, to the second. A
failed read keeps every session and is tried again next time.

With a Redis URL, revocation reaches every process at once: `revoked` (the admin route)
publishes the key id, and each process's subscription (`kirby_api.shared_state`) calls
`check` for it; the periodic re-read stays as the backstop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from kirby_api.database import ConnectionPool
from kirby_api.keys import ApiKey, get_keys
from kirby_api.shared_state import SharedState, SharedStateUnavailable
from kirby_core.errors import StorageError

log = logging.getLogger(__name__)

MIN_CHECK_SECONDS = 1.0


class KeyWatch:
    def __init__(
        self, database: ConnectionPool, cache_seconds: float, shared: SharedState | None = None
    ) -> None:
        self._database = database
        self._shared = shared
        self.every = max(MIN_CHECK_SECONDS, cache_seconds)
        self._sessions: dict[int, set[asyncio.Future[str]]] = {}
        self._prefixes: dict[int, str] = {}

    @contextmanager
    def watching(self, key: ApiKey) -> Iterator[asyncio.Future[str]]:
        """A future that gets the reason once the key is dead, for as long as the block runs."""
        dead: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._sessions.setdefault(key.id, set()).add(dead)
        self._prefixes[key.id] = key.prefix
        try:
            yield dead
        finally:
            sessions = self._sessions[key.id]
            sessions.discard(dead)
            if not sessions:
                del self._sessions[key.id], self._prefixes[key.id]

    async def check(self, only: int | None = None) -> None:
        """Re-read every watched key (or only key `only`) once; resolve the sessions of the
        dead ones."""
        ids = list(self._sessions) if only is None else [only] if only in self._sessions else []
        if not ids:
            return
        found = {key.id: key for key in await get_keys(self._database, ids)}
        now = datetime.now(UTC)
        for key_id in ids:
            key = found.get(key_id)
            prefix = self._prefixes.get(key_id)
            refusal = f"API key {prefix}... was deleted" if key is None else key.refusal(now)
            if refusal is None:
                continue
            for dead in self._sessions.get(key_id, ()):
                if not dead.done():
                    dead.set_result(refusal)

    async def revoked(self, key_id: int) -> None:
        """`key_id` was just revoked: end its sessions here, and (with Redis) everywhere."""
        await self.check(key_id)
        if self._shared is not None:
            try:
                await self._shared.publish_revoked(key_id)
            except SharedStateUnavailable as exc:  # the periodic re-read still finds it
                log.warning("key revocation not published key=%d error=%s", key_id, exc)

    async def check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check()
            except StorageError as exc:
                log.warning("ws key check failed keys=%d error=%s", len(self._sessions), exc)
