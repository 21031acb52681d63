"""Per-key request counters, kept in memory and written in batches.

Counting a request is a dict increment; every `api_usage_flush_seconds` one UPDATE adds
the counts of all keys that were used (and moves `last_used_at`). A flush that fails keeps
its counts for the next one, and shutdown flushes what is left, so a count is lost only if
the process dies between flushes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from kirby_api.database import ConnectionPool
from kirby_api.keys import add_usage
from kirby_core.errors import KirbyError

log = logging.getLogger(__name__)


class UsageCounter:
    def __init__(self, database: ConnectionPool, flush_seconds: float) -> None:
        self._database = database
        self._flush_seconds = flush_seconds
        self._counts: dict[int, int] = {}
        self._last_used: dict[int, datetime] = {}

    def count(self, key_id: int) -> None:
        self._counts[key_id] = self._counts.get(key_id, 0) + 1
        self._last_used[key_id] = datetime.now(UTC)

    async def flush(self) -> int:
        """Write the pending counts; returns how many keys were updated."""
        if not self._counts:
            return 0
        counts, last_used = self._counts, self._last_used
        self._counts, self._last_used = {}, {}
        try:
            await add_usage(self._database, counts, last_used)
        except KirbyError:
            for key_id, n in counts.items():  # merge back for the next flush
                self._counts[key_id] = self._counts.get(key_id, 0) + n
                self._last_used.setdefault(key_id, last_used[key_id])
            raise
        return len(counts)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except KirbyError as exc:
                log.warning("usage flush failed, retrying next time error=%s", exc)
