"""Everything an API process holds, built once per app and run by its lifespan.

`Runtime` wires the services (pool, in-memory catalog, market reads and pages, latest-N
cache, key verifier, usage counters, rate limiter, WebSocket hub and key watch, LISTEN
connection, metrics) and owns the background tasks: catalog refresh, usage flush,
LISTEN + dispatch, WebSocket heartbeat and key checks, and with a Redis URL the shared
limits and caps (`kirby_api.shared_state`), lease renewal and revocation subscription. The
lifespan opens the pool and loads the catalog before the first request, starts the tasks, freezes
the startup heap out of the garbage collector's full passes (they stalled the event loop
for ~60 ms every few seconds under load) and times every pass from then on
(`kirby_api_gc_pause_seconds`), and on shutdown cancels the tasks, flushes
pending usage counts and closes the pool. The app factory
exposes the services to handlers through typed dependency injection.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar

from kirby_api.auth import KeyVerifier
from kirby_api.bulk import CsvExport
from kirby_api.database import ConnectionPool
from kirby_api.latest_cache import LatestCache
from kirby_api.market_data import MarketData
from kirby_api.observability import Metrics
from kirby_api.pages import Pages
from kirby_api.ratelimit import Limiter, RateLimiter
from kirby_api.series import SeriesCatalog
from kirby_api.shared_state import SharedLimiter, SharedState
from kirby_api.usage import UsageCounter
from kirby_api.ws.caps import Caps, LocalCaps, SharedCaps
from kirby_api.ws.hub import Hub
from kirby_api.ws.key_watch import KeyWatch
from kirby_api.ws.listener import ChangeListener
from kirby_core.backups import BackupStore
from kirby_core.errors import KirbyError, StorageError
from kirby_core.locations import backup_location
from kirby_core.settings import Settings

log = logging.getLogger(__name__)

GC_THRESHOLDS = (10_000, 10, 100)
"""Young passes every 10,000 allocations (default 700), full passes considered after 100
middle ones (default 10). Each open WebSocket keeps a few hundred objects alive, so with a
thousand clients a full pass stalls every client for 50-100 ms; the young passes still
collect the request and message churn."""


class Runtime:
    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.database = ConnectionPool(database_url, settings)
        self.catalog = SeriesCatalog(self.database, settings.api_catalog_refresh_seconds)
        self.market = MarketData(self.database)
        self.latest_cache = LatestCache(settings.api_latest_cache_seconds)
        self.pages = Pages(self.market, self.latest_cache, CsvExport(self.database, settings))
        self.verifier = KeyVerifier(self.database, settings.api_key_cache_seconds)
        self.usage = UsageCounter(self.database, settings.api_usage_flush_seconds)
        self.hub = Hub(self.market, self.catalog, self.metrics)
        self.shared: SharedState | None = None
        self.limiter: Limiter
        self.auth_failures: Limiter
        self.caps: Caps
        self._leases: SharedCaps | None = None
        if settings.redis_url is None:
            self.limiter = RateLimiter(settings.api_rate_limit_per_minute)
            self.auth_failures = RateLimiter(settings.api_auth_failures_per_minute)
            self.caps = LocalCaps(self.hub, settings.api_ws_max_connections)
        else:
            shared = self.shared = SharedState(settings.redis_url, settings.api_ws_lease_seconds)
            self.limiter = SharedLimiter(shared, "requests", settings.api_rate_limit_per_minute)
            self.auth_failures = SharedLimiter(
                shared, "auth_failures", settings.api_auth_failures_per_minute
            )
            self.caps = self._leases = SharedCaps(shared, settings.api_ws_max_connections)
        self.key_watch = KeyWatch(self.database, settings.api_key_cache_seconds, self.shared)
        self.listener = ChangeListener(database_url, self.hub, self.latest_cache, self.metrics)
        self._tasks: list[asyncio.Task[None]] = []

    def _start(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"kirby_api.{name}")
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def _watch_backups(self) -> None:
        """Keep `kirby_backup_last_success_timestamp_seconds` current from the backup
        location (blocking filesystem calls, so in a worker thread); a location that cannot
        be read is logged once per failure streak and the last values are kept."""
        store = BackupStore(backup_location(self.settings))
        failing = False
        while True:
            try:
                self.metrics.backups.taken_at = await asyncio.to_thread(store.newest_taken_at)
                failing = False
            except (OSError, ValueError, KirbyError) as exc:
                if not failing:
                    log.warning(
                        "event=backup_watch_failed location=%s error=%s", store.location.url, exc
                    )
                failing = True
            await asyncio.sleep(self.settings.api_backup_watch_seconds)

    @asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        thresholds = gc.get_threshold()
        await self.database.open()
        try:
            await self.catalog.load()
            await self.hub.start_position()
            self._start("catalog_refresh", self.catalog.refresh_forever())
            self._start("usage_flush", self.usage.flush_forever())
            self._start("listen", self.listener.listen_forever())
            self._start("dispatch", self.listener.dispatch_forever())
            heartbeat = self.hub.heartbeat_forever(self.settings.api_ws_heartbeat_seconds)
            self._start("heartbeat", heartbeat)
            self._start("key_watch", self.key_watch.check_forever())
            self._start("backup_watch", self._watch_backups())
            if self._leases is not None:
                self._start("ws_leases", self._leases.renew_forever())
            if self.shared is not None:
                revocations = self.shared.listen_revocations(self._revoked, self._recheck)
                self._start("revocations", revocations)
            # Everything built so far lives as long as the process: keep it out of the
            # collector's full passes, which otherwise stall the loop for ~60 ms at a time.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            gc.callbacks.append(self.metrics.observe_gc)
            log.info("api started starlistings=%d", len(self.catalog.starlistings))
            yield
        finally:
            if self.metrics.observe_gc in gc.callbacks:
                gc.callbacks.remove(self.metrics.observe_gc)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            try:
                await self.usage.flush()
            except KirbyError as exc:  # the database may be what is going away
                log.warning("final usage flush failed error=%s", exc)
            await self.database.close()
            if self.shared is not None:
                await self.shared.close()
            log.info("api stopped")

    async def _revoked(self, key_id: int) -> None:
        """A process revoked `key_id` (published through Redis)."""
        self.verifier.forget(key_id)
        await self._recheck(key_id)

    async def _recheck(self, key_id: int | None = None) -> None:
        try:
            await self.key_watch.check(key_id)
        except StorageError as exc:  # the periodic re-read tries again
            log.warning("ws key check failed key=%s error=%s", key_id or "all", exc)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task died task=%s", task.get_name(), exc_info=task.exception())
