"""Change notifications from writers to live readers, over PostgreSQL NOTIFY.

After a flush the stream tells listeners which rows changed: one channel per table
(`kirby_candles`, `kirby_funding_rates`, `kirby_open_interest`), payload a compact JSON
object mapping series id to the changed times in epoch milliseconds:

    {"12": [1716000000000, 1716000060000], "13": [1716000000000]}

A listener then reads those rows itself (the payload never carries values, so it stays
small and a reader always sees committed data). PostgreSQL caps a payload below 8000
bytes; `encode_changes` splits larger change sets into several payloads. Backfills do not
notify.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

import asyncpg

from kirby_core.datasets import DATASETS
from kirby_core.errors import InvalidRequest
from kirby_core.timeutil import datetime_to_ms, ms_to_datetime

NOTIFY_CHANNELS = {dataset.name: dataset.notify_channel for dataset in DATASETS.values()}
"""Table -> its NOTIFY channel, from the declarations in `kirby_core.datasets`."""
MAX_PAYLOAD_BYTES = 7900  # PostgreSQL's limit is 8000 bytes; keep a margin


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


async def notify(
    conn: asyncpg.Connection, table: str, changes: Mapping[int, Iterable[datetime]]
) -> int:
    """Send the notifications for `table`; returns how many payloads were sent.

    Inside a transaction, PostgreSQL delivers them at commit, together with the rows.
    """
    channel = NOTIFY_CHANNELS[table]
    payloads = encode_changes(changes)
    for payload in payloads:
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
    return len(payloads)
