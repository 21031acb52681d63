"""The one LISTEN connection of an API process, kept alive across PostgreSQL restarts.

It listens on the change channels (`kirby_core.db.notify`) of the datasets it serves;
asyncpg calls back in the event loop, and the callback only puts the payload on a bounded
queue. A dispatcher task takes payloads in order, drops the cached latest-N pages of the
series named, and hands them to the hub, which re-reads the rows through the pool. The
latest-N cache is only used while this connection is up. If the queue ever overflows,
payloads are dropped and a catch-up is scheduled instead (and the cache cleared), so a
stalled database never grows memory without bound.

The connection is checked every `CHECK_SECONDS` with a query under a timeout (a dead TCP
peer sends no FIN); when it is lost it is re-opened with exponential backoff and jitter,
capped at `MAX_BACKOFF_SECONDS` and reset by a healthy connect, and the hub catches up
(`Hub.catch_up`): it fans out every change event after the last one it handled, from the
`change_events` log, exactly as if they had arrived live; notifications of events it
replayed are then skipped. An event whose fan-out failed (the pool reconnecting) is
replayed the same way with the next notification. Only when that log no longer reaches
back so far does it re-send every row of subscribed series since the start of the interval
in which the connection was last known to work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

import asyncpg

from kirby_api.datasets import SERVED_DATASETS
from kirby_api.latest_cache import LatestCache
from kirby_api.observability import Metrics
from kirby_api.ws.hub import Hub
from kirby_core.db import notify
from kirby_core.db.connection import connect
from kirby_core.db.errors import DRIVER_ERRORS
from kirby_core.errors import KirbyError, StorageError

log = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
MIN_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 10.0
QUEUE_SIZE = 10_000
_CONNECTION_ERRORS = (StorageError, *DRIVER_ERRORS)
LISTENED = tuple(notify.NOTIFY_CHANNELS[name] for name in SERVED_DATASETS)
"""The channels of the datasets this API serves (not every dataset that notifies)."""


class ChangeListener:
    def __init__(self, url: str, hub: Hub, cache: LatestCache, metrics: Metrics) -> None:
        self._url = url
        self._hub = hub
        self._cache = cache
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[str | None, str, float]] = asyncio.Queue(QUEUE_SIZE)
        """(channel or None to wake the dispatcher, payload, `time.perf_counter()`)."""
        self._catch_up_since: datetime | None = None
        self.connected = asyncio.Event()
        """Set while listening; tests and /health wait on it."""
        self.connections = 0
        """Connections opened so far (reconnects = connections - 1)."""
        self._opened = asyncio.Event()
        self._alive_at = datetime.now(UTC)

    def _on_notification(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        try:
            self._queue.put_nowait((channel, payload, time.perf_counter()))
        except asyncio.QueueFull:
            self._cache.clear()  # its invalidations are in the payloads being dropped
            self._metrics.ws_dropped.labels("listen_queue_full").inc()
            self._catch_up_since = self._catch_up_since or datetime.now(UTC)

    async def listen_forever(self) -> None:
        backoff = MIN_BACKOFF_SECONDS
        lost_at: datetime | None = None
        while True:
            try:
                conn = await connect(
                    self._url, application_name="kirby_api_listener", connect_timeout=CHECK_SECONDS
                )
            except _CONNECTION_ERRORS as exc:
                log.warning("listen connect failed retry_in=%.1fs error=%r", backoff, exc)
            else:
                try:
                    await self._listen(conn, lost_at)
                except _CONNECTION_ERRORS as exc:
                    log.warning("listen connection lost error=%r", exc)
                finally:
                    self._cache.enabled = False  # nothing would tell it about changes
                    self.connected.clear()
                    self._metrics.listen_connected.set(0)
                    conn.terminate()
                # Rows may have changed unseen since the last moment the connection was known
                # to work, not just since the loss was noticed.
                lost_at = self._alive_at
                backoff = MIN_BACKOFF_SECONDS
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _listen(self, conn: asyncpg.Connection, lost_at: datetime | None) -> None:
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _c: closed.set())
        for channel in LISTENED:
            # asyncpg passes the payload as a str; its stubs say object
            await conn.add_listener(channel, self._on_notification)  # type: ignore[arg-type]
        self._alive_at = datetime.now(UTC)
        self.connections += 1
        self._opened.set()
        if self.connections > 1:
            self._metrics.listen_reconnects.inc()
        self._cache.clear()
        self._cache.enabled = True
        self.connected.set()
        self._metrics.listen_connected.set(1)
        log.info("listening channels=%s reconnect=%s", len(LISTENED), lost_at is not None)
        # Events committed before LISTEN took effect came with no notification: catch up
        # from the log (on the first connection too: the hub's position is where it started).
        since = self._alive_at if lost_at is None else lost_at
        self._catch_up_since = min(self._catch_up_since or since, since)
        with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes it anyway
            self._queue.put_nowait((None, "", time.perf_counter()))  # wake the dispatcher
        while True:
            try:
                async with asyncio.timeout(CHECK_SECONDS):
                    await closed.wait()
                raise ConnectionResetError("the server closed the LISTEN connection")
            except TimeoutError:
                pass
            async with asyncio.timeout(CHECK_SECONDS):
                await conn.fetchval("SELECT 1")
            self._alive_at = datetime.now(UTC)

    async def wait_for_connection(self, number: int) -> None:
        """Return once the `number`-th connection is listening (1: the first one)."""
        while self.connections < number or not self.connected.is_set():
            self._opened.clear()
            await self._opened.wait()

    async def dispatch_forever(self) -> None:
        """Hand events to the hub in order; a failure costs that event, never the loop."""
        while True:
            channel, payload, received = await self._queue.get()
            if self._catch_up_since is not None:
                since, self._catch_up_since = self._catch_up_since, None
                if not await self._guarded(self._hub.catch_up(since), "catch-up"):
                    self._catch_up_since = since  # again with the next notification
            if channel is None:
                continue
            try:
                event = notify.decode_notification(channel, payload)
            except KirbyError as exc:
                log.warning("ignoring notification channel=%s error=%s", channel, exc)
                continue
            last = self._hub.last_event_id
            if last is not None and event.id <= last:
                continue  # a catch-up already fanned it out
            self._cache.invalidate(event.table, event.changes)
            if not await self._guarded(self._hub.on_change(event, received), "fan-out"):
                # the log still has it: the next notification catches up from before it
                self._catch_up_since = self._catch_up_since or datetime.now(UTC)

    async def _guarded(self, work: Awaitable[None], what: str) -> bool:
        try:
            await work
        except KirbyError as exc:  # e.g. the pool is reconnecting: keep the loop alive
            log.warning("%s failed error=%s", what, exc)
            return False
        return True
