"""Recorded mainnet responses through the real parsers: every field of several rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from kirby_core.exchanges import parse_candle_snapshot, parse_funding_history
from kirby_core.exchanges.base import select_candles
from kirby_core.models import Candle, FundingRate
from kirby_core.timeutil import ms_to_datetime
from tests.exchanges.cassettes import recorded


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_candle_snapshot_keeps_every_digit() -> None:
    _, payload = recorded("candles_snapshot", "candleSnapshot")

    candles = parse_candle_snapshot(payload, "kPEPE", "1h")

    assert len(candles) == 24
    assert candles[0] == Candle(
        time=utc(2023, 5, 21, 20),
        open=Decimal("0.001601"),
        high=Decimal("0.001616"),
        low=Decimal("0.001601"),
        close=Decimal("0.001604"),
        volume=Decimal("520665683.0"),
        trade_count=709,
    )
    assert candles[1] == Candle(
        time=utc(2023, 5, 21, 21),
        open=Decimal("0.001603"),
        high=Decimal("0.001603"),
        low=Decimal("0.001584"),
        close=Decimal("0.001591"),
        volume=Decimal("682593287.0"),
        trade_count=802,
    )
    assert candles[-1] == Candle(
        time=utc(2023, 5, 22, 19),
        open=Decimal("0.001538"),
        high=Decimal("0.001548"),
        low=Decimal("0.001536"),
        close=Decimal("0.00154"),
        volume=Decimal("308219489.0"),
        trade_count=430,
    )
    # Equal Decimals can differ in digits; the exchange's own spelling must survive.
    assert [str(v) for v in candles[-1][1:6]] == [
        "0.001538",
        "0.001548",
        "0.001536",
        "0.00154",
        "308219489.0",
    ]
    assert all(c.time.tzinfo is UTC for c in candles)


def test_candle_snapshot_boundary_candle_opening_before_start_is_dropped() -> None:
    request, payload = recorded("candles_snapshot", "candleSnapshot")
    start = ms_to_datetime(request["req"]["startTime"])  # 2023-05-21 20:46:47
    end = ms_to_datetime(request["req"]["endTime"])

    candles = select_candles(parse_candle_snapshot(payload, "kPEPE", "1h"), start, end)

    assert payload[0]["t"] < request["req"]["startTime"]
    assert len(candles) == 23
    assert candles[0].time == utc(2023, 5, 21, 21)
    assert candles[-1].time == utc(2023, 5, 22, 19)
    assert [c.time for c in candles] == sorted({c.time for c in candles})


def test_funding_history_with_end_time() -> None:
    request, payload = recorded("funding_history_1684811870000", "fundingHistory")
    assert request["endTime"] == 1684811870000

    rows = parse_funding_history(payload, "BTC")

    assert len(rows) == 34
    assert rows[0] == (
        1683849600048,
        FundingRate(
            time=utc(2023, 5, 12, 0, 0),
            settled_funding_rate=Decimal("-0.00061334"),
            settled_premium=Decimal("-0.00091334"),
        ),
    )
    assert rows[1] == (
        1683878400388,
        FundingRate(
            time=utc(2023, 5, 12, 8, 0),
            settled_funding_rate=Decimal("-0.00074503"),
            settled_premium=Decimal("-0.00104503"),
        ),
    )
    last_ms, last = rows[-1]
    assert last_ms == 1684800000022
    assert last == FundingRate(
        time=utc(2023, 5, 23, 0, 0),
        settled_funding_rate=Decimal("-0.00018991"),
        settled_premium=Decimal("-0.00048991"),
    )
    # Live-feed columns stay empty: history only knows the settled rate.
    assert last.predicted_funding_rate is None and last.premium is None
    assert last.mark_price is None and last.next_funding_time is None


def test_funding_history_times_are_floored_to_the_minute() -> None:
    _, payload = recorded("funding_history_None", "fundingHistory")

    rows = parse_funding_history(payload, "BTC")

    assert len(rows) == 1038
    assert any(ms % 60_000 for ms, _ in rows)  # the raw times carry jitter...
    assert all(row.time.second == 0 and row.time.microsecond == 0 for _, row in rows)
    last_ms, last = rows[-1]
    assert last_ms == 1689627600065
    assert last == FundingRate(
        time=utc(2023, 7, 17, 21, 0),
        settled_funding_rate=Decimal("0.0000125"),
        settled_premium=Decimal("0.00007028"),
    )
    assert str(last.settled_funding_rate) == "0.0000125"
    assert str(last.settled_premium) == "0.00007028"
