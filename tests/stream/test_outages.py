"""Feed gaps: from the last data before the loss to the first data after, per series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kirby_core.exchanges.registry import HYPERLIQUID, feed_of
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import FeedPlan
from kirby_stream.feed import CatalogReplaced, FeedHealth, FeedLost
from kirby_stream.intake import Intake
from kirby_stream.outages import FeedGaps, Outage
from kirby_stream.stats import Stats

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
CATALOG = FeedPlan(
    "hyperliquid",
    "wss://api.hyperliquid.xyz/ws",
    candles={("BTC", "1m"): 1, ("BTC", "15m"): 2, ("SOL", "1m"): 3},
    funding={"BTC": 10, "SOL": 11},
    open_interest={"BTC": 10, "SOL": 11},
)


def test_a_gap_runs_from_the_last_data_to_the_next_and_covers_every_series_of_the_coin() -> None:
    gaps = FeedGaps()
    assert gaps.saw_data("BTC", T0, CATALOG) == []
    gaps.lost({"BTC"}, T0 + 3 * S, "connection closed")
    gaps.lost({"BTC"}, T0 + 5 * S, "stall")  # already open: the first cause stays
    assert gaps.saw_data("SOL", T0 + 6 * S, CATALOG) == []
    closed = gaps.saw_data("BTC", T0 + 9 * S, CATALOG)
    assert sorted(closed, key=lambda o: (o.dataset, o.series_id)) == [
        Outage(dataset, series, T0, T0 + 9 * S, "connection closed")
        for dataset, series in (
            ("candles", 1),
            ("candles", 2),
            ("funding_rates", 10),
            ("open_interest", 10),
        )
    ]
    assert gaps.saw_data("BTC", T0 + 10 * S, CATALOG) == []


def test_a_coin_never_seen_starts_its_gap_when_the_feed_was_lost() -> None:
    gaps = FeedGaps()
    gaps.lost({"SOL"}, T0, "connection closed")
    assert [(o.start_time, o.end_time) for o in gaps.saw_data("SOL", T0 + S, CATALOG)] == [
        (T0, T0 + S)
    ] * 3


def test_open_gaps_end_when_the_coin_leaves_or_the_collector_stops() -> None:
    gaps = FeedGaps()
    gaps.saw_data("BTC", T0, CATALOG)
    gaps.lost({"BTC", "SOL"}, T0 + S, "stall")
    closed = gaps.close({"SOL"}, T0 + 4 * S, CATALOG, "no longer collected")
    assert {o.reason for o in closed} == {"stall; no longer collected"}
    assert gaps.open_coins == {"BTC"}
    stopped = gaps.close(gaps.open_coins, T0 + 5 * S, CATALOG, "collector stopped")
    assert {(o.start_time, o.end_time, o.reason) for o in stopped} == {
        (T0, T0 + 5 * S, "stall; collector stopped")
    }
    assert gaps.open_coins == frozenset()


def test_a_predecessor_gap_ends_at_each_coins_first_data() -> None:
    gaps = FeedGaps()
    gaps.saw_data("BTC", T0 + 4 * S, CATALOG)  # seen before the predecessor was claimed
    gaps.saw_data("BTC", T0 + 6 * S, CATALOG)
    now = gaps.inherit({"BTC", "SOL"}, T0, CATALOG, "collector x stopped")
    assert {(o.dataset, o.start_time, o.end_time) for o in now} == {
        (dataset, T0, T0 + 4 * S) for dataset in ("candles", "funding_rates", "open_interest")
    }
    assert len(now) == 4
    assert gaps.since == T0  # SOL: not seen yet, its gap stays open
    later = gaps.saw_data("SOL", T0 + 7 * S, CATALOG)
    assert {(o.start_time, o.end_time, o.reason) for o in later} == {
        (T0, T0 + 7 * S, "collector x stopped")
    }
    assert gaps.since is None


def test_a_predecessor_that_stored_past_our_first_data_leaves_no_window() -> None:
    gaps = FeedGaps()
    gaps.saw_data("BTC", T0, CATALOG)
    assert gaps.inherit({"BTC"}, T0 + S, CATALOG, "collector x stopped") == []


def test_a_channel_that_does_not_come_back_keeps_its_own_gap() -> None:
    """After a reconnect, candles of BTC flow again but its asset context does not (the
    exchange refuses that channel): the candle gap closes at the first candle, the funding
    and open-interest gap stays open until the collector stops, and becomes their outage."""
    adapter = feed_of(HYPERLIQUID)
    buffers, health = Buffers(1000), FeedHealth()
    intake = Intake(buffers, health, Stats("test", T0), adapter, CATALOG)
    intake.event(CatalogReplaced(CATALOG, T0))
    intake.event(FeedLost(frozenset({"BTC"}), T0, "connection closed"))
    candle = {
        "t": 1736164800000, "T": 1736164859999, "s": "BTC", "i": "1m", "o": "1", "c": "1",
        "h": "1", "l": "1", "v": "1", "n": 1,
    }  # fmt: skip
    intake.frame(json.dumps({"channel": "candle", "data": candle}), T0 + 5 * S, 0.0)
    assert sorted((o.dataset, o.series_id, o.end_time) for o in buffers.outages) == [
        ("candles", 1, T0 + 5 * S),
        ("candles", 2, T0 + 5 * S),
    ]
    intake.close_gaps(T0 + 60 * S)
    assert sorted(
        (o.dataset, o.series_id, o.start_time, o.end_time) for o in buffers.outages[2:]
    ) == [
        ("funding_rates", 10, T0, T0 + 60 * S),
        ("open_interest", 10, T0, T0 + 60 * S),
    ]
