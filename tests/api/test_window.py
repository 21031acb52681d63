"""Pure parts: time parameters, windows and cursors; the WebSocket client queue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kirby_api.errors import InvalidParameter
from kirby_api.window import (
    MAX_TIME,
    MIN_TIME,
    decode_cursor,
    encode_cursor,
    make_window,
    page_cursors,
    parse_time,
)
from kirby_api.ws.hub import Client

T = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:30:00Z", T),
        ("2024-05-01T14:30:00+02:00", T),
        ("2024-05-01T14:30:00 02:00", T),  # '+' decoded as a space
        ("2024-05-01 12:30", T),
        ("2024-05-01T12:30:00.000", T),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("1714566600", T),
        ("1714566600000", T),
        ("1714566600.5", T + timedelta(milliseconds=500)),
        ("0", MIN_TIME),
        (" 1714566600 ", T),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time("start_time", text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a time"),
        ("soon", "is not a time"),
        ("-5", "is not a time"),
        ("2024-02-30", "is not a time"),
        ("1969-12-31T23:59:59Z", "is out of range"),
        ("0001-01-01T00:00:00+01:00", "is not a time"),
        ("1e12", "is not a time"),
        ("999999999999999999", "is out of range"),
    ],
)
def test_parse_time_refuses(text: str, problem: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        parse_time("end_time", text)
    assert refused.value.parameter == "end_time"
    assert problem in str(refused.value)


def test_windows() -> None:
    latest = make_window(None, None, 10, None)
    assert (latest.lower, latest.upper, latest.newest, latest.open_ended) == (
        MIN_TIME,
        MAX_TIME,
        True,
        True,
    )
    forward = make_window("2024-05-01", "2024-05-02", 5, None)
    assert (forward.newest, forward.open_ended) == (False, False)
    after = make_window(None, None, 5, encode_cursor("a", T))
    assert (after.lower, after.newest) == (T + timedelta(microseconds=1), False)
    before = make_window("2024-05-01", None, 5, encode_cursor("b", T))
    assert (before.lower, before.upper, before.newest) == (
        datetime(2024, 5, 1, tzinfo=UTC),
        T,
        True,
    )
    empty = make_window("2024-05-01T13:00:00Z", None, 5, encode_cursor("b", T))
    assert empty.upper == empty.lower  # a cursor outside the bounds reads nothing


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor("b", T)) == ("b", T, None)
    for garbage in ("", "!!!", encode_cursor("a", T)[:-3] + "###", "eDEyMw"):
        with pytest.raises(InvalidParameter):
            decode_cursor(garbage)
    fine = T + timedelta(microseconds=123456)
    assert decode_cursor(encode_cursor("a", fine, 'x:"1'), keyed=True) == ("a", fine, 'x:"1')
    for wrong_kind, keyed in ((encode_cursor("a", T), True), (encode_cursor("a", T, "1"), False)):
        with pytest.raises(InvalidParameter, match="route"):
            decode_cursor(wrong_kind, keyed=keyed)
    with pytest.raises(InvalidParameter):
        decode_cursor(encode_cursor("a", T, "x" * 300), keyed=True)


def test_page_cursors() -> None:
    first, last = T, T + timedelta(minutes=9)
    latest = make_window(None, None, 10, None)
    assert page_cursors(latest, first, last, 10) == (
        encode_cursor("a", last),
        encode_cursor("b", first),
    )
    assert page_cursors(latest, first, last, 3)[1] is None  # nothing older
    bounded = make_window("2024-05-01", "2024-05-02", 10, None)
    assert page_cursors(bounded, first, last, 3)[0] is None  # the range is exhausted
    assert page_cursors(bounded, first, last, 10)[0] == encode_cursor("a", last)
    assert page_cursors(bounded, None, None, 0) == (None, None)


async def test_client_holds_live_rows_until_history_is_queued() -> None:
    client = Client(key_id=None, queue_size=5)
    key = ("candles", 1)
    client.hold([key])
    assert client.offer(key, "live-1")
    assert client.offer(("candles", 2), "other")  # not held
    assert client.offer(None, "history")
    client.release([key])
    queued = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
    assert queued == ["other", "history", "live-1"]


async def test_client_overflow_is_flagged_not_waited_on() -> None:
    client = Client(key_id=None, queue_size=2)
    assert client.offer(None, "a") and client.offer(None, "b")
    assert not client.offer(None, "c")
    assert client.overflowed.is_set()
    await asyncio.wait_for(client.overflowed.wait(), timeout=1)
    assert not client.offer(None, "d")  # nothing more once overflowed
    assert client.queue.qsize() == 2
