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
        assert notify.decode_changes(payload) == {7: [T0]}
    finally:
        await listener.close()
