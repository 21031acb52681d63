"""In-memory fan-out: who is subscribed to what, and delivery of live rows to them.

One `Hub` per API process. The LISTEN connection hands it each change notification
(`on_change`); it re-reads the changed rows once (only of series someone is subscribed to),
encodes each row's message once, and offers the same text to every subscriber's bounded
queue without waiting. A client whose queue is full is marked overflowed and disconnected
by its connection handler (close code 4408) instead of slowing the others; the messages it
missed are counted as dropped.

Subscriptions are keyed by (dataset, series id): candles by starlisting, funding and open
interest by trading pair (several starlistings of one pair share one key per client). While
a subscription's history is being read, live messages for it are held back and released
after the history, so a client always sees history first and never misses an update that
lands in between. After the LISTEN connection was lost, `resync` re-sends every subscribed
series' rows from the start of the interval in which the connection dropped.

Every live message carries the id of the change event that caused it (`event_id`,
`kirby_core.db.notify`); ids are global, so they mean the same on every replica. A
subscribe with `resume_from` replays, for the keys it names, every event after that id
that the database still keeps (`send_resume`), holding live messages meanwhile and
dropping the held ones the replay already covered: each event reaches the client once,
in order, with no gap. An id older than the kept history (or unknown) gets a
`resume_unavailable` message instead, and live messages continue. Heartbeat pings carry
the newest event fanned out, a resume point for clients whose series are quiet.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg
import msgspec

from kirby_api.datasets import (
    BY_CHANNEL,
    SERVED_BOOKS,
    SERVED_CANDLES,
    SERVED_DATASETS,
    SERVED_FUNDING,
    SERVED_OPEN_INTEREST,
    SERVED_TRADES,
    ServedDataset,
)
from kirby_api.formats import encode_message
from kirby_api.market_data import MarketData
from kirby_api.observability import Metrics
from kirby_api.series import SeriesCatalog
from kirby_api.ws import protocol
from kirby_core.db.catalog_store import Starlisting
from kirby_core.db.notify import ChangeEvent
from kirby_core.errors import NotFound
from kirby_core.timeutil import floor_time

log = logging.getLogger(__name__)

SubscriptionKey = tuple[str, int]
"""(dataset name, series id)."""
Position = tuple[datetime, str]
"""Where a trade sits in its pair's order: (time, trade id)."""

RESYNC_ROWS = 1000


class Client:
    """One WebSocket connection's subscriptions and outgoing queue."""

    def __init__(self, key_id: int | None, queue_size: int) -> None:
        self.key_id = key_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.subscriptions: dict[int, set[str]] = {}
        """starlisting id -> channels."""
        self.overflowed = asyncio.Event()
        self._held: dict[SubscriptionKey, list[tuple[int | None, str, Position | None]]] = {}
        self._replayed: dict[SubscriptionKey | None, int] = {}
        """Key -> the newest event a resume replayed for it: live copies are dropped."""
        self.positions: dict[SubscriptionKey, Position] = {}
        """Keyed datasets (trades): key -> the last row queued (history included)."""

    def _sent(self, key: SubscriptionKey | None, position: Position | None) -> bool:
        """Whether a row at `position` is at or before the last one queued for `key`."""
        if key is None or position is None:
            return False
        last = self.positions.get(key)
        return last is not None and position <= last

    def offer(
        self,
        key: SubscriptionKey | None,
        text: str,
        event_id: int | None = None,
        position: Position | None = None,
    ) -> bool:
        """Queue a message without waiting; False (and overflowed) when the queue is full.
        `position`: a trade's; one at or before the last queued for its key is skipped."""
        if self.overflowed.is_set():
            return False
        if event_id is not None and event_id <= self._replayed.get(key, 0):
            return True  # a resume sent it already (its fan-out was under way meanwhile)
        held = self._held.get(key) if key is not None else None
        if held is not None:
            held.append((event_id, text, position))
            if len(held) <= self.queue.maxsize:
                return True
        elif self._sent(key, position):
            return True
        else:
            try:
                self.queue.put_nowait(text)
            except asyncio.QueueFull:
                pass
            else:
                if key is not None and position is not None:
                    self.positions[key] = position
                return True
        self.overflowed.set()
        return False

    async def put(
        self, text: str, key: SubscriptionKey | None = None, position: Position | None = None
    ) -> bool:
        """Queue a message, waiting for room; False once the client is overflowed."""
        if self.overflowed.is_set():
            return False
        if self._sent(key, position):
            return True
        await self.queue.put(text)
        if key is not None and position is not None:
            self.positions[key] = position
        return True

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def hold(self, keys: Iterable[SubscriptionKey]) -> None:
        for key in keys:
            self._held.setdefault(key, [])

    def release(self, keys: Iterable[SubscriptionKey], replayed_through: int | None = None) -> None:
        """Queue the held messages of `keys`, but those of events up to `replayed_through`
        (a resume already sent them)."""
        for key in keys:
            if replayed_through is not None:
                self._replayed[key] = replayed_through
            for event_id, text, position in self._held.pop(key, ()):
                self.offer(key, text, event_id, position)

    def keys(self, catalog: SeriesCatalog) -> set[SubscriptionKey]:
        """The (dataset, series) keys its starlisting subscriptions add up to."""
        keys: set[SubscriptionKey] = set()
        for starlisting_id, channels in self.subscriptions.items():
            keys |= subscription_keys([catalog.starlisting_by_id(starlisting_id)], channels)
        return keys


def subscription_keys(
    stars: Iterable[Starlisting], channels: Iterable[str]
) -> set[SubscriptionKey]:
    """Candles are keyed by starlisting; funding and open interest by its trading pair."""
    keys: set[SubscriptionKey] = set()
    for star in stars:
        for channel in channels:
            dataset = BY_CHANNEL[channel]
            series_id = star.id if dataset.per_starlisting else star.trading_pair_id
            keys.add((dataset.name, series_id))
    return keys


_LIVE: dict[str, type[msgspec.Struct]] = {
    SERVED_CANDLES.name: protocol.CandleMessage,
    SERVED_FUNDING.name: protocol.FundingMessage,
    SERVED_OPEN_INTEREST.name: protocol.OpenInterestMessage,
    SERVED_TRADES.name: protocol.TradeMessage,
    SERVED_BOOKS.name: protocol.BookMessage,
}


def position_of(dataset: ServedDataset, record: asyncpg.Record) -> Position | None:
    """A ranged dataset's row position (time, tiebreak or ""); None for the others."""
    if not dataset.ranged:
        return None
    return (record["time"], record[dataset.tiebreak] if dataset.tiebreak else "")


def _ranges(
    event: ChangeEvent, wanted: Callable[[int], bool]
) -> list[tuple[int, datetime, datetime]]:
    """A keyed dataset's event: (series id, first time, last time) of the series wanted."""
    return [
        (series_id, min(times), max(times))
        for series_id, times in event.changes.items()
        if times and wanted(series_id)
    ]


def _event_rows(
    event: ChangeEvent, rows: Mapping[tuple[str, int, datetime], asyncpg.Record]
) -> Iterable[tuple[int, asyncpg.Record]]:
    """The rows an event named that `rows` holds, in the live path's order (time, series)."""
    named = sorted(
        (moment, series_id) for series_id, times in event.changes.items() for moment in times
    )
    for moment, series_id in named:
        record = rows.get((event.table, series_id, moment))
        if record is not None:
            yield series_id, record


AFTER_EVERY_ID = "\U0010ffff"
"""A position's id above every trade id: (t, AFTER_EVERY_ID) is after every row at t."""


class _Tape(NamedTuple):
    """A keyed series' replayed rows, ascending, with their times (for bisecting)."""

    times: list[datetime]
    records: list[asyncpg.Record]


def _tape_rows(
    event: ChangeEvent, tapes: Mapping[SubscriptionKey, _Tape]
) -> Iterable[tuple[int, asyncpg.Record]]:
    """The rows of a keyed event's [first, last] ranges that `tapes` holds."""
    for series_id, first, last in _ranges(event, lambda _: True):
        tape = tapes.get((event.table, series_id))
        if tape is not None:
            low = bisect.bisect_left(tape.times, first)
            high = bisect.bisect_right(tape.times, last)
            for record in tape.records[low:high]:
                yield series_id, record


def _unavailable(resume_from: int, oldest: int | None) -> protocol.ResumeUnavailable:
    kept = "none is kept" if oldest is None else f"the oldest kept is {oldest}"
    return protocol.ResumeUnavailable(
        resume_from=resume_from,
        oldest_event_id=oldest,
        message=f"cannot resume from event {resume_from}: {kept}; re-fetch the rows you "
        "missed over REST (GET /candles/..., /funding/..., /open_interest/..., /trades/..., "
        "/books/...) and subscribe without resume_from",
    )


class Hub:
    def __init__(self, market: MarketData, catalog: SeriesCatalog, metrics: Metrics) -> None:
        self._market = market
        self._catalog = catalog
        self._metrics = metrics
        self._subscribers: dict[SubscriptionKey, set[Client]] = {}
        self.clients: set[Client] = set()
        self.per_key: Counter[int | None] = Counter()
        self.last_event_id: int | None = None
        """The newest change event fanned out (None before the first)."""

    # --- connections and subscriptions -----------------------------------------------------

    def connect(self, client: Client) -> None:
        self.clients.add(client)
        self.per_key[client.key_id] += 1
        self._metrics.ws_connections.set(len(self.clients))

    def disconnect(self, client: Client) -> None:
        if client not in self.clients:
            return
        self._set_keys(client, client.keys(self._catalog), set())
        self.clients.discard(client)
        self.per_key[client.key_id] -= 1
        if self.per_key[client.key_id] <= 0:
            del self.per_key[client.key_id]
        dropped = client.queue.qsize()
        if dropped:
            self._metrics.ws_dropped.labels("client_closed").inc(dropped)
        self._metrics.ws_connections.set(len(self.clients))

    def update(self, client: Client, subscriptions: dict[int, set[str]]) -> None:
        """Replace a client's subscriptions."""
        before = client.keys(self._catalog)
        client.subscriptions = subscriptions
        self._set_keys(client, before, client.keys(self._catalog))

    def _set_keys(
        self, client: Client, before: set[SubscriptionKey], after: set[SubscriptionKey]
    ) -> None:
        for key in before - after:
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self._subscribers[key]
        for key in after - before:
            self._subscribers.setdefault(key, set()).add(client)

    # --- messages ----------------------------------------------------------------------------

    def series_name(self, dataset: ServedDataset, series_id: int) -> str:
        if dataset.per_starlisting:
            return str(self._catalog.starlisting_by_id(series_id).key)
        return str(self._catalog.trading_pair_by_id(series_id).key)

    def live_message(
        self, dataset: ServedDataset, series_id: int, row: Sequence, event_id: int | None
    ) -> str:
        message = _LIVE[dataset.name](
            series_id, self.series_name(dataset, series_id), dataset.row(*row), event_id
        )
        return encode_message(message).decode()

    def historical_message(
        self, dataset: ServedDataset, series_id: int, count: int, rows: bytes
    ) -> str:
        """`rows`: the JSON objects as the database encoded them, comma-separated."""
        per_star = dataset.per_starlisting
        message = protocol.Historical(
            channel=dataset.channel,
            series=self.series_name(dataset, series_id),
            count=count,
            data=[],
            starlisting_id=series_id if per_star else None,
            trading_pair_id=None if per_star else series_id,
        )
        empty = encode_message(message)  # ...,"data":[]}
        return (empty[:-2] + rows + b"]}").decode()

    async def send_history(
        self, client: Client, keys: set[SubscriptionKey], rows_per_series: int
    ) -> None:
        """Queue the latest rows of each key (one query per dataset), then release held
        live messages of those keys."""
        try:
            by_dataset: dict[str, list[int]] = {}
            for name, series_id in sorted(keys):
                by_dataset.setdefault(name, []).append(series_id)
            for name, series_ids in by_dataset.items():
                dataset = SERVED_DATASETS[name]
                found = await self._market.latest_many_json(dataset, series_ids, rows_per_series)
                for series_id in series_ids:
                    latest = found.get(series_id)
                    count, rows = (0, b"") if latest is None else latest[:2]
                    client.offer(None, self.historical_message(dataset, series_id, count, rows))
                    if latest is not None and dataset.ranged:
                        # live rows at or before the history's last one are not sent again
                        position = (latest.last, latest.last_id or "")
                        client.positions[name, series_id] = position
        finally:
            client.release(keys)

    async def send_resume(
        self, client: Client, keys: set[SubscriptionKey], resume_from: int
    ) -> None:
        """Queue the live messages of every kept event after `resume_from` for `keys`
        (or `resume_unavailable`), then release held live messages not replayed.

        The replay waits for room in the client's queue rather than overflowing it (an hour
        of events is more than a queue holds); live messages are held meanwhile."""
        replayed_through = None
        try:
            bounds = await self._market.event_bounds()
            if bounds is None or not bounds[0] - 1 <= resume_from <= bounds[1]:
                oldest = None if bounds is None else bounds[0]
                client.offer(None, encode_message(_unavailable(resume_from, oldest)).decode())
                return
            events = [
                event
                for event in await self._market.events_after(resume_from, bounds[1])
                if event.table in SERVED_DATASETS  # e.g. books, before they are served
            ]
            replayed_through = bounds[1]
            rows: dict[tuple[str, int, datetime], asyncpg.Record] = {}
            tapes: dict[SubscriptionKey, _Tape] = {}
            for dataset in SERVED_DATASETS.values():
                mine = [e for e in events if e.table == dataset.name]
                if dataset.ranged:
                    tapes |= await self._tapes(client, dataset, mine, keys, resume_from)
                    continue
                wanted = {
                    (series_id, moment)
                    for event in mine
                    for series_id, times in event.changes.items()
                    if (dataset.name, series_id) in keys
                    for moment in times
                }
                if wanted:
                    for record in await self._market.changed(dataset, sorted(wanted)):
                        rows[dataset.name, record[0], record["time"]] = record
            for event in events:  # in id order, whatever the dataset
                dataset = SERVED_DATASETS[event.table]
                ranged = dataset.ranged
                named = _tape_rows(event, tapes) if ranged else _event_rows(event, rows)
                for series_id, record in named:
                    text = self.live_message(dataset, series_id, record[1:], event.id)
                    key = (dataset.name, series_id)
                    if not await client.put(text, key, position_of(dataset, record)):
                        return
        finally:
            client.release(keys, replayed_through)

    async def _tapes(
        self,
        client: Client,
        dataset: ServedDataset,
        events: list[ChangeEvent],
        keys: set[SubscriptionKey],
        resume_from: int,
    ) -> dict[SubscriptionKey, _Tape]:
        """A keyed dataset's replay: the rows of every event's ranges for `keys`, by key;
        the client's position per key starts after the last time an event up to
        `resume_from` named (those rows were sent before the reconnect)."""
        spans: dict[int, tuple[datetime, datetime]] = {}
        for event in events:
            for series_id, first, last in _ranges(event, lambda i: (dataset.name, i) in keys):
                low, high = spans.get(series_id, (first, last))
                spans[series_id] = (min(low, first), max(high, last))
        if not spans:
            return {}
        sent = await self._market.last_times_through(dataset, list(spans), resume_from)
        for series_id, moment in sent.items():
            key = (dataset.name, series_id)
            position = (moment, AFTER_EVERY_ID)
            client.positions[key] = max(client.positions.get(key, position), position)
        tapes: dict[SubscriptionKey, _Tape] = {}
        ranges = [(i, first, last) for i, (first, last) in spans.items()]
        for record in await self._market.ranged(dataset, ranges):
            tape = tapes.setdefault((dataset.name, record[0]), _Tape([], []))
            tape.times.append(record["time"])
            tape.records.append(record)
        return tapes

    def _deliver(
        self,
        key: SubscriptionKey,
        text: str,
        event_id: int | None,
        position: Position | None = None,
    ) -> None:
        for client in tuple(self._subscribers.get(key, ())):
            if not client.offer(key, text, event_id, position):
                self._metrics.ws_dropped.labels("queue_full").inc()

    async def on_change(self, event: ChangeEvent, received: float) -> None:
        """Fan out the rows an event named (`received`: its `time.perf_counter()`)."""
        dataset = SERVED_DATASETS.get(event.table)
        if dataset is None:  # a dataset this API does not serve (yet): nobody can want it
            self.last_event_id = event.id
            return
        if dataset.ranged:
            # a ranged event names each series' [first, last] time: read every row between
            ranges = _ranges(event, lambda i: (event.table, i) in self._subscribers)
            if ranges:
                await self._fan_out(dataset, await self._market.ranged(dataset, ranges), event.id)
            self.last_event_id = event.id
            self._metrics.listen_lag.observe(time.perf_counter() - received)
            return
        wanted = [
            (series_id, moment)
            for series_id, times in event.changes.items()
            if (event.table, series_id) in self._subscribers
            for moment in times
        ]
        for series_id, times in event.changes.items():
            if times:
                self._observe(dataset, series_id, max(times))
        if wanted:
            records = await self._market.changed(dataset, wanted)
            await self._fan_out(dataset, records, event.id)
        self.last_event_id = event.id
        self._metrics.listen_lag.observe(time.perf_counter() - received)

    async def _fan_out(self, dataset: ServedDataset, records: list, event_id: int | None) -> None:
        for record in records:
            series_id = record[0]
            text = self.live_message(dataset, series_id, record[1:], event_id)
            self._deliver((dataset.name, series_id), text, event_id, position_of(dataset, record))

    def _observe(self, dataset: ServedDataset, series_id: int, latest: datetime) -> None:
        try:
            name = self.series_name(dataset, series_id)
        except NotFound:  # not in the catalog yet: the next refresh brings it
            return
        self._metrics.freshness.observe(dataset.name, name, latest)

    async def start_position(self) -> None:
        """Take the newest event as handled: called before serving, so that every event a
        resuming client cannot find in the log yet reaches the hub (live or by catch-up)."""
        bounds = await self._market.event_bounds()
        self.last_event_id = 0 if bounds is None else bounds[1]

    async def catch_up(self, since: datetime) -> None:
        """After events may have been missed (LISTEN (re)connected, queue overflow): fan
        out every kept event after the last one handled; if the log does not reach back
        that far, `resync(since)`."""
        last = self.last_event_id
        bounds = await self._market.event_bounds()
        if bounds is None:
            return  # no event was ever logged (the newest one is never pruned)
        if last is None or bounds[0] - 1 > last:
            await self.resync(since)
            return
        for event in await self._market.events_after(last, bounds[1]):
            await self.on_change(event, time.perf_counter())

    async def resync(self, since: datetime) -> None:
        """Re-send rows every subscribed series may have changed since `since`."""
        for dataset in SERVED_DATASETS.values():
            starts = []
            for name, series_id in list(self._subscribers):
                if name != dataset.name:
                    continue
                interval = "1m"
                if dataset.per_starlisting:
                    interval = self._catalog.starlisting_by_id(series_id).key.interval
                starts.append((series_id, floor_time(since, interval)))
            if starts:
                records = await self._market.since(dataset, starts, RESYNC_ROWS)
                await self._fan_out(dataset, records, None)

    def heartbeat(self) -> None:
        """A ping to every client, carrying the newest event fanned out: every message of
        an event up to it is queued before the ping, so a client may resume from it (on a
        quiet series its last row's id would soon fall out of the kept history). A client
        with messages held back (history or a replay under way) gets a ping without it."""
        now = datetime.now(UTC)
        with_id = encode_message(protocol.ServerPing(now, self.last_event_id)).decode()
        without = encode_message(protocol.ServerPing(now)).decode()
        for client in tuple(self.clients):
            client.offer(None, without if client.holding else with_id)

    async def heartbeat_forever(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.heartbeat()
