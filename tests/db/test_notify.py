import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kirby_core.db import notify
from kirby_core.errors import InvalidRequest

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def test_round_trip_small() -> None:
    changes = {12: [T0, T0 + timedelta(minutes=1), T0], 13: [T0]}
    payloads = notify.encode_changes(changes)
    assert payloads == ['{"12":[1714521600000,1714521660000],"13":[1714521600000]}']
    assert notify.decode_changes(payloads[0]) == {12: [T0, T0 + timedelta(minutes=1)], 13: [T0]}


def test_large_change_sets_are_split_under_the_limit() -> None:
    changes = {sid: [T0 + timedelta(minutes=m) for m in range(60)] for sid in range(1, 40)}
    payloads = notify.encode_changes(changes)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= notify.MAX_PAYLOAD_BYTES for p in payloads)
    merged: dict[int, list] = {}
    for payload in payloads:
        for sid, times in notify.decode_changes(payload).items():
            merged.setdefault(sid, []).extend(times)
    assert merged == changes


def test_decode_rejects_garbage() -> None:
    with pytest.raises(InvalidRequest, match="not a Kirby change notification"):
        notify.decode_changes("{not json")


async def test_listeners_receive_at_commit(database_urls, conn) -> None:
    listener = await asyncpg.connect(database_urls.realtime)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(
        notify.NOTIFY_CHANNELS["candles"], lambda *a: received.put_nowait(a[3])
    )
    try:
        async with conn.transaction():
            sent = await notify.notify(conn, "candles", {7: [T0]})
        assert sent == 1
        payload = await asyncio.wait_for(received.get(), timeout=5)
        event_id = await conn.fetchval("SELECT id FROM change_events")
        assert payload.startswith(f"{event_id} ")
        channel = notify.NOTIFY_CHANNELS["candles"]
        assert notify.decode_notification(channel, payload) == (event_id, "candles", {7: [T0]})
        assert await notify.events_after(conn, event_id - 1, event_id) == [
            (event_id, "candles", {7: [T0]})
        ]
    finally:
        await listener.close()


async def test_a_rolled_back_flush_leaves_no_event(conn) -> None:
    with pytest.raises(ZeroDivisionError):
        async with conn.transaction():
            await notify.notify(conn, "candles", {7: [T0]})
            raise ZeroDivisionError
    assert await notify.event_bounds(conn) is None


async def test_split_changes_are_consecutive_events_and_prune_keeps_the_newest(conn) -> None:
    changes = {sid: [T0 + timedelta(minutes=m) for m in range(400)] for sid in range(1, 6)}
    async with conn.transaction():
        sent = await notify.notify(conn, "candles", changes)
    assert sent == len(notify.encode_changes(changes)) > 1
    oldest, newest = await notify.event_bounds(conn)
    assert newest - oldest == sent - 1
    events = await notify.events_after(conn, oldest - 1, newest)
    together: dict[int, list] = {}
    for event in events:
        for sid, times in event.changes.items():
            together.setdefault(sid, []).extend(times)
    assert together == changes
    await notify.prune(conn, 3600)  # all recent: nothing goes
    assert await notify.event_bounds(conn) == (oldest, newest)
    await notify.prune(conn, 0)
    assert await notify.event_bounds(conn) == (newest, newest)


@pytest.mark.parametrize(
    ("channel", "payload"),
    [("kirby_candles", "{}"), ("kirby_candles", "x {}"), ("elsewhere", "1 {}")],
)
def test_a_foreign_notification_is_refused(channel: str, payload: str) -> None:
    with pytest.raises(InvalidRequest, match="not a Kirby change notification"):
        notify.decode_notification(channel, payload)
