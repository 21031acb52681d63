"""The buffers between feed and database: latest state wins, closed minutes only, restore
without losing newer state, rows held until stored, a memory bound that drops the oldest
rows and says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.db.trades import TradeRow
from kirby_core.models import CandleRow, FundingRateRow, OpenInterestRow
from kirby_stream.buffers import Buffers
from kirby_stream.latency import BUCKET_SECONDS, BUCKETS
from kirby_stream.outages import Outage
from kirby_stream.stats import Stats

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def candle(sid: int, minute: int, close: str) -> CandleRow:
    price = Decimal(close)
    return CandleRow(sid, T0 + minute * MINUTE, price, price, price, price, Decimal(1), 1)


def context(pair: int, minute: int, mark: str) -> tuple[FundingRateRow, OpenInterestRow]:
    time = T0 + minute * MINUTE
    return (
        FundingRateRow(
            pair, time, predicted_funding_rate=Decimal("0.0001"), mark_price=Decimal(mark)
        ),
        OpenInterestRow(pair, time, open_interest=Decimal(mark)),
    )


def trade(pair: int, second: int, trade_id: str) -> TradeRow:
    return TradeRow(pair, T0 + second * SECOND, trade_id, Decimal("10.5"), Decimal("0.1"), "buy")


def add_context(buffers: Buffers, funding: FundingRateRow, interest: OpenInterestRow) -> None:
    buffers.add_funding(funding)
    buffers.add_open_interest(interest)


def test_latest_state_per_key_wins() -> None:
    buffers = Buffers(100)
    buffers.add_candle(candle(1, 0, "10"), 1.0)
    buffers.add_candle(candle(1, 0, "11"), 2.0)
    buffers.add_candle(candle(1, 1, "12"), 3.0)
    add_context(buffers, *context(7, 0, "5"))
    add_context(buffers, *context(7, 0, "6"))
    assert buffers.sizes() == {"candles": 2, "funding_rates": 1, "open_interest": 1, "trades": 0}
    batch = buffers.take(T0 + 2 * MINUTE)
    assert [r.close for r in batch.rows["candles"]] == [Decimal("11"), Decimal("12")]
    assert [r.mark_price for r in batch.rows["funding_rates"]] == [Decimal("6")]
    assert [r.open_interest for r in batch.rows["open_interest"]] == [Decimal("6")]
    assert len(batch.candle_received) == 3
    assert buffers.size == 0


@pytest.mark.parametrize(
    ("now", "everything", "taken_minutes"),
    [
        (T0 + timedelta(seconds=59), False, []),  # minute 0 still open
        (T0 + MINUTE, False, [0]),  # minute 0 just closed
        (T0 + MINUTE + timedelta(seconds=30), False, [0]),  # minute 1 open
        (T0 + MINUTE + timedelta(seconds=30), True, [0, 1]),  # stopping: everything
    ],
)
def test_funding_and_interest_leave_when_their_minute_closes(
    now: datetime, everything: bool, taken_minutes: list[int]
) -> None:
    buffers = Buffers(100)
    add_context(buffers, *context(7, 0, "5"))
    add_context(buffers, *context(7, 1, "6"))
    batch = buffers.take(now, everything)
    for table in ("funding_rates", "open_interest"):
        assert [(r.time - T0) // MINUTE for r in batch.rows[table]] == taken_minutes
    assert buffers.sizes()["funding_rates"] == 2 - len(taken_minutes)


def test_a_failed_batch_comes_back_without_overwriting_newer_state() -> None:
    buffers = Buffers(100)
    buffers.add_candle(candle(1, 0, "10"), 1.0)
    add_context(buffers, *context(7, 0, "5"))
    buffers.outages.append(Outage("candles", 1, T0, T0, "test"))
    batch = buffers.take(T0 + MINUTE)
    buffers.add_candle(candle(1, 0, "11"), 2.0)  # arrives while the write fails
    buffers.restore(batch)
    again = buffers.take(T0 + MINUTE)
    assert [r.close for r in again.rows["candles"]] == [Decimal("11")]
    assert [r.mark_price for r in again.rows["funding_rates"]] == [Decimal("5")]
    assert again.outages == batch.outages
    assert len(again.candle_received) == 2


def test_a_batch_being_written_is_held_until_stored() -> None:
    buffers = Buffers(100)
    buffers.add_candle(candle(1, 0, "10"), 1.0)
    add_context(buffers, *context(7, 0, "5"))
    buffers.add_trades([trade(7, 1, "a")])
    one_each = {"candles": 1, "funding_rates": 1, "open_interest": 1, "trades": 1}
    batch = buffers.take(T0 + MINUTE)
    assert buffers.sizes() == dict.fromkeys(one_each, 0)
    assert buffers.held() == one_each  # still only in memory while the write runs
    buffers.restore(batch)  # the write failed: buffered again, counted once
    assert buffers.held() == buffers.sizes() == one_each
    buffers.finished(buffers.take(T0 + MINUTE))  # stored
    assert buffers.held() == dict.fromkeys(one_each, 0)


def test_the_bound_drops_the_oldest_rows_and_records_them_as_outages() -> None:
    buffers = Buffers(10)
    for minute in range(6):
        buffers.add_candle(candle(1, minute, "10"), float(minute))
        add_context(buffers, *context(7, minute, "5"))
    # 6 candles + 6 funding + 6 OI would be 18; each time 11 is reached, down to 9
    assert buffers.size <= 10
    assert buffers.dropped == 18 - buffers.size
    kept = buffers.take(T0 + 10 * MINUTE)
    oldest_kept = min(r.time for rows in kept.rows.values() for r in rows)
    assert {(o.dataset, o.series_id) for o in kept.outages} == {
        ("candles", 1),
        ("funding_rates", 7),
        ("open_interest", 7),
    }
    assert min(o.start_time for o in kept.outages) == T0
    assert max(o.end_time for o in kept.outages) <= oldest_kept
    assert all(o.reason.startswith("buffer full (bound 10 rows") for o in kept.outages)


def test_latency_samples_stay_bounded_through_a_long_outage() -> None:
    """Five minutes of 5 candle pushes every 10 ms with nothing committed: the pending
    receive times stay within a fixed number of slots, and the percentiles are still right."""
    buffers = Buffers(100)
    pushes_per_slot, slots = 5, 30_000
    for slot in range(slots):
        for _ in range(pushes_per_slot):
            buffers.add_candle(candle(1, 0, "10"), slot * BUCKET_SECONDS)
    batch = buffers.take(T0 + MINUTE)
    assert len(batch.candle_received) == pushes_per_slot * slots
    assert len(batch.candle_received.slots) <= 2 * BUCKETS
    stats = Stats("test", T0)
    committed = slots * BUCKET_SECONDS
    stats.record_latencies(committed, batch.candle_received)
    assert sum(stats.latency_histogram) == pushes_per_slot * slots
    assert stats.latency_percentile(0.3) == pytest.approx(90.0, abs=0.02)
    assert stats.latency_percentile(0.5) == BUCKETS * BUCKET_SECONDS  # 150 s: the last bucket


@pytest.mark.parametrize(
    ("received", "gaps_since", "everything", "covered"),
    [
        (None, None, False, None),  # nothing received: coverage unknown
        (T0 + 90 * SECOND, None, False, T0 + MINUTE),  # funding/OI of minute 1 stay behind
        (T0 + 90 * SECOND, None, True, T0 + 90 * SECOND),  # stopping: everything taken
        (T0 + 90 * SECOND, T0 + 10 * SECOND, True, T0 + 10 * SECOND),  # a gap is open
        (None, T0 + 10 * SECOND, False, T0 + 10 * SECOND),  # inherited, nothing received
    ],
)
def test_a_batch_covers_what_was_received_before_open_gaps_and_open_minutes(
    received: datetime | None,
    gaps_since: datetime | None,
    everything: bool,
    covered: datetime | None,
) -> None:
    buffers = Buffers(100)
    buffers.received_through, buffers.gaps_since = received, gaps_since
    assert buffers.take(T0 + 100 * SECOND, everything).covered_through == covered


def test_trades_are_buffered_once_per_trade_id_and_all_taken() -> None:
    buffers = Buffers(100)
    assert buffers.add_trades([trade(7, 1, "a"), trade(7, 2, "b")]) == 2
    assert buffers.add_trades([trade(7, 2, "b"), trade(7, 3, "c"), trade(8, 2, "b")]) == 2
    batch = buffers.take(T0)  # trades of the open minute too: they never change
    assert [(r.trading_pair_id, r.trade_id) for r in batch.rows["trades"]] == [
        (7, "a"),
        (7, "b"),
        (7, "c"),
        (8, "b"),
    ]
    buffers.add_trades([trade(7, 4, "d")])
    buffers.restore(batch)  # a failed write: buffered again, nothing twice
    assert buffers.sizes()["trades"] == 5


def test_the_bound_drops_the_oldest_trades_as_a_trades_outage() -> None:
    buffers = Buffers(10)
    buffers.add_trades([trade(7, second, str(second)) for second in range(12)])
    assert buffers.size == 9
    assert buffers.outages == [Outage("trades", 7, T0, T0 + 2 * SECOND, buffers.outages[0].reason)]
