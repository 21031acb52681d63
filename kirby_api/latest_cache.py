"""Encoded latest-N pages, kept until their series changes.

The latest-N poll (no times, no cursor) is what live clients repeat all day, and its answer
only changes when the stream writes that series. So its JSON body is cached per
(dataset, series, limit) and dropped the moment a NOTIFY names the series. Three guards keep
it honest:

- a generation counter per series: a page read before an invalidation is never stored
  after it (a slow read cannot resurrect stale data);
- a TTL (`api_latest_cache_seconds`), because writers that do not NOTIFY (backfills) exist;
- no caching at all while the LISTEN connection is down, and a full clear when it returns.

Concurrent misses of one key share a single read (single flight). The cache is bounded by
total body bytes (least recently used first out).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

MAX_BYTES = 64 * 1024 * 1024

CacheKey = tuple[str, int, int]
"""(dataset name, series id, limit)."""


@dataclass(frozen=True)
class Page:
    body: bytes
    headers: dict[str, str]


class LatestCache:
    def __init__(self, ttl_seconds: float, max_bytes: int = MAX_BYTES) -> None:
        self._ttl = ttl_seconds
        self._max_bytes = max_bytes
        self._pages: OrderedDict[CacheKey, tuple[float, Page]] = OrderedDict()
        self._bytes = 0
        self._generation: dict[tuple[str, int], int] = {}
        self._inflight: dict[CacheKey, asyncio.Future[Page]] = {}
        self._epoch = 0
        self.enabled = False
        """Set while the LISTEN connection is up (see module docstring)."""
        self.hits = 0
        self.misses = 0

    async def get(self, key: CacheKey, read: Callable[[], Awaitable[Page]]) -> Page:
        if not self.enabled or self._ttl <= 0:
            return await read()
        cached = self._pages.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self._pages.move_to_end(key)
            self.hits += 1
            return cached[1]
        pending = self._inflight.get(key)
        if pending is None:
            self.misses += 1
            # A task of its own: a requester that goes away does not cancel the others' read.
            pending = asyncio.ensure_future(self._fill(key, read, self._stamp(key)))
            self._inflight[key] = pending
            pending.add_done_callback(lambda task: self._settled(key, task))
        else:
            self.hits += 1
        return await asyncio.shield(pending)

    async def _fill(
        self, key: CacheKey, read: Callable[[], Awaitable[Page]], stamp: tuple[int, int]
    ) -> Page:
        page = await read()
        if self.enabled and self._stamp(key) == stamp:
            self._store(key, page)
        return page

    def _stamp(self, key: CacheKey) -> tuple[int, int]:
        return self._epoch, self._generation.get((key[0], key[1]), 0)

    def _settled(self, key: CacheKey, task: asyncio.Future[Page]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: a failure every requester abandoned is not reported

    def _store(self, key: CacheKey, page: Page) -> None:
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1].body)
        self._pages[key] = (time.monotonic() + self._ttl, page)
        self._bytes += len(page.body)
        while self._bytes > self._max_bytes and self._pages:
            _, (_, evicted) = self._pages.popitem(last=False)
            self._bytes -= len(evicted.body)

    def invalidate(self, dataset: str, series_ids: Iterable[int]) -> None:
        wanted = set(series_ids)
        for series_id in wanted:
            series = (dataset, series_id)
            self._generation[series] = self._generation.get(series, 0) + 1
        stale = [k for k in self._pages if k[0] == dataset and k[1] in wanted]
        for key in stale:
            self._bytes -= len(self._pages.pop(key)[1].body)

    def clear(self) -> None:
        self._epoch += 1
        self._pages.clear()
        self._bytes = 0
