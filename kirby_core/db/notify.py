"""Change events from writers to live readers: numbered rows plus PostgreSQL NOTIFY.

After a flush the stream tells listeners which rows changed: one channel per table
(`kirby_candles`, `kirby_funding_rates`, `kirby_open_interest`), the changes a compact JSON
object mapping series id to the changed times in epoch milliseconds:

    {"12": [1716000000000, 1716000060000], "13": [1716000000000]}

Each such object is a change event: a row of `change_events` written in the transaction
that writes the rows (so an event exists exactly when its rows are committed), whose id
the notification carries in front: `"41 {...}"`. Ids grow in commit order (one collector
writes at a time), so a reader that saw event N can ask for every event after N
(`events_after`): API replicas replay them to a WebSocket client that resumes, and to
themselves after their LISTEN connection was lost. `prune` bounds the history.

A listener then reads those rows itself (the payload never carries values, so it stays
small and a reader always sees committed data). PostgreSQL caps a payload below 8000
bytes; `encode_changes` splits larger change sets into several events. Backfills do not
notify. Redis was measured as the bus instead (bench/README.md, "Fan-out bus") and not
taken: the numbered log must commit with the rows, which only the database can do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import asyncpg

from kirby_core.datasets import DATASETS, RECORDED_DATASETS
from kirby_core.errors import InvalidRequest
from kirby_core.timeutil import datetime_to_ms, ms_to_datetime

NOTIFY_CHANNELS = {dataset.name: dataset.notify_channel for dataset in DATASETS.values()}
NOTIFY_CHANNELS |= {name: f"kirby_{name}" for name in RECORDED_DATASETS if name not in DATASETS}
"""Table -> its NOTIFY channel, from the declarations in `kirby_core.datasets` (the trade
tape and book samples, which are no `Dataset`s, by the same rule)."""
_TABLE_OF = {channel: table for table, channel in NOTIFY_CHANNELS.items()}
MAX_PAYLOAD_BYTES = 7900  # PostgreSQL's limit is 8000 bytes; keep a margin (and the id)


class Reader(Protocol):
    """A connection or the API's pool."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...


class ChangeEvent(NamedTuple):
    id: int
    table: str
    changes: dict[int, list[datetime]]


def encode_changes(changes: Mapping[int, Iterable[datetime]]) -> list[str]:
    """Payloads (each under the limit) that together name every changed (series, time)."""
    payloads: list[str] = []
    current: dict[str, list[int]] = {}
    size = 2  # the braces
    for series_id, times in changes.items():
        key = str(series_id)
        for moment in sorted(set(times)):
            ms = datetime_to_ms(moment)
            cost = len(str(ms)) + 1 + (0 if key in current else len(key) + 6)
            if size + cost > MAX_PAYLOAD_BYTES and current:
                payloads.append(json.dumps(current, separators=(",", ":")))
                current, size = {}, 2
                cost = len(str(ms)) + 1 + len(key) + 6
            current.setdefault(key, []).append(ms)
            size += cost
    if current:
        payloads.append(json.dumps(current, separators=(",", ":")))
    return payloads


def decode_changes(payload: str) -> dict[int, list[datetime]]:
    """The inverse of `encode_changes` for one payload; `InvalidRequest` if it is not one."""
    try:
        raw = json.loads(payload)
        return {int(k): [ms_to_datetime(int(ms)) for ms in v] for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidRequest(f"not a Kirby change notification: {payload[:80]!r}") from exc


def decode_notification(channel: str, payload: str) -> ChangeEvent:
    """A NOTIFY (`"<event id> <changes>"`) -> its event; `InvalidRequest` if it is not one."""
    table = _TABLE_OF.get(channel)
    head, _, changes = payload.partition(" ")
    if table is None or not head.isdigit():
        raise InvalidRequest(f"not a Kirby change notification: {channel!r} {payload[:80]!r}")
    return ChangeEvent(int(head), table, decode_changes(changes))


EVENTS_LOCK = 0x4B697262  # "Kirb": the transaction-scoped advisory lock of event writers
_PUBLISH = """
WITH event AS (
    INSERT INTO change_events (dataset, payload)
    SELECT $1, payload FROM unnest($2::text[]) WITH ORDINALITY AS p(payload, n) ORDER BY n
    RETURNING id, payload
)
SELECT count(pg_notify($3, id::text || ' ' || payload))
FROM (SELECT id, payload FROM event ORDER BY id) AS ordered
"""


async def notify(
    conn: asyncpg.Connection, table: str, changes: Mapping[int, Iterable[datetime]]
) -> int:
    """Record and announce the change events of `table`; returns how many there were.

    Inside a transaction, PostgreSQL commits the events and delivers the notifications at
    commit, together with the rows. One round trip for all of them.
    """
    payloads = encode_changes(changes)
    if not payloads:
        return 0
    # Held to commit: event ids then commit in the order they were drawn, even if two
    # writers ever overlap (a reader that saw id N must never later find a smaller one).
    await conn.execute("SELECT pg_advisory_xact_lock($1)", EVENTS_LOCK)
    sent: int = await conn.fetchval(_PUBLISH, table, payloads, NOTIFY_CHANNELS[table])
    return sent


async def prune(conn: asyncpg.Connection, keep_seconds: float) -> None:
    """Delete events older than `keep_seconds`, always keeping the newest one (so a reader
    can still tell an id it knows from one beyond the history)."""
    await conn.execute(
        "DELETE FROM change_events WHERE created_at < now() - make_interval(secs => $1)"
        " AND id < (SELECT max(id) FROM change_events)",
        keep_seconds,
    )


async def event_bounds(conn: Reader) -> tuple[int, int] | None:
    """(oldest, newest) event id kept, or None when there is none."""
    row = await conn.fetchrow("SELECT min(id), max(id) FROM change_events")
    return None if row is None or row[0] is None else (row[0], row[1])


async def events_after(conn: Reader, after: int, through: int) -> list[ChangeEvent]:
    """The events with `after` < id <= `through`, in order."""
    rows = await conn.fetch(
        "SELECT id, dataset, payload FROM change_events WHERE id > $1 AND id <= $2 ORDER BY id",
        after,
        through,
    )
    return [ChangeEvent(r["id"], r["dataset"], decode_changes(r["payload"])) for r in rows]
