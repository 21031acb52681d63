import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kirby_core.errors import InvalidRequest
from kirby_core.timeutil import (
    EPOCH,
    FLOAT_EXACT_MS,
    datetime_to_ms,
    expected_count,
    floor_minute,
    floor_time,
    interval_seconds,
    iter_open_times,
    ms_to_datetime,
)

T = datetime(2024, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("1m", datetime(2024, 3, 14, 15, 9, tzinfo=UTC)),
        ("5m", datetime(2024, 3, 14, 15, 5, tzinfo=UTC)),
        ("15m", datetime(2024, 3, 14, 15, 0, tzinfo=UTC)),
        ("4h", datetime(2024, 3, 14, 12, 0, tzinfo=UTC)),
        ("1d", datetime(2024, 3, 14, tzinfo=UTC)),
        ("1w", datetime(2024, 3, 11, tzinfo=UTC)),  # weeks open on Monday
    ],
)
def test_floor_time(interval: str, expected: datetime) -> None:
    assert floor_time(T, interval) == expected


def test_floor_minute_converts_to_utc() -> None:
    plus_two = T.astimezone(timezone(timedelta(hours=2)))
    assert floor_minute(plus_two) == datetime(2024, 3, 14, 15, 9, tzinfo=UTC)
    assert floor_minute(plus_two).tzinfo == UTC


def test_ms_round_trip() -> None:
    assert ms_to_datetime(1710428966535) == T
    assert datetime_to_ms(T) == 1710428966535
    assert datetime_to_ms(T.replace(tzinfo=None)) == 1710428966535  # naive is UTC


def test_ms_to_datetime_is_exact_on_both_paths() -> None:
    """The float path (`fromtimestamp(ms / 1000)`) equals exact arithmetic wherever it is
    taken: at its bounds, around the epoch, and on random ms up to them; beyond them the
    exact path serves (year 9999 included)."""
    rng = random.Random(15)
    edge = FLOAT_EXACT_MS - 1
    samples = [0, 1, -1, 999, 1000, 1001, edge, -edge, edge - 1, 253402300799999]
    samples += [rng.randrange(-edge, edge) for _ in range(200_000)]
    samples += [rng.randrange(1_500_000_000_000, 2_000_000_000_000) for _ in range(100_000)]
    for ms in samples:
        assert ms_to_datetime(ms) == EPOCH + timedelta(milliseconds=ms), ms
    assert ms_to_datetime(edge).tzinfo is UTC and ms_to_datetime(FLOAT_EXACT_MS).tzinfo is UTC


def test_unknown_interval_names_allowed_values() -> None:
    with pytest.raises(InvalidRequest, match=r"unknown interval '7m'; allowed: 1m, 3m, 5m"):
        interval_seconds("7m")


@pytest.mark.parametrize(
    ("start", "end", "interval", "count"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), "1m", 1440),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), "4h", 6),
        (
            datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC),
            datetime(2024, 1, 1, 0, 3, tzinfo=UTC),
            "1m",
            2,
        ),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), "1m", 0),
        (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), "1m", 0),
    ],
)
def test_expected_count_matches_iteration(start, end, interval, count) -> None:
    assert expected_count(start, end, interval) == count
    assert len(list(iter_open_times(start, end, interval))) == count
