"""Each exchange's integrity rules, fed by the real depth parsers: in-order messages
applied, a planted sequence gap detected (book dropped, counted, recorded, resync asked
for) and healed by the next snapshot, stale messages ignored, Bybit's u = 1 restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from kirby_core.books import (
    BinanceFuturesBook,
    BinanceSpotBook,
    BybitBook,
    CoinbaseConnection,
    Counters,
    HyperliquidBook,
    OkxBook,
    Outcome,
    SeriesBook,
    series_book,
)
from kirby_core.books.book import BookUpdate
from kirby_core.errors import InvalidRequest
from kirby_core.exchanges import (
    binance_wire,
    bybit_wire,
    coinbase_wire,
    hyperliquid_wire,
    okx_wire,
)
from tests.books import frames

AT = datetime(2025, 1, 6, 12, 12, 31, tzinfo=UTC)


def feed(book: SeriesBook | CoinbaseConnection, updates: tuple[BookUpdate, ...]) -> list[Outcome]:
    return [book.feed(update) for update in updates]


def counters(book: SeriesBook) -> tuple[int, int, int, int]:
    c = book.counters
    return c.updates, c.gaps, c.resyncs, c.stale


# --- Binance spot ---------------------------------------------------------------------------


def test_binance_spot_buffers_until_the_snapshot_then_chains_u() -> None:
    book = BinanceSpotBook("BTCUSDT")
    parse = binance_wire.parse_depth
    assert feed(book, parse(frames.binance(95, 99, [["100", "9"]]), AT)) == [Outcome.BUFFERED]
    assert feed(book, parse(frames.binance(100, 103, [["100", "2"]]), AT)) == [Outcome.BUFFERED]
    snapshot = binance_wire.parse_depth_snapshot(
        frames.binance_rest(101, [["100", "1"], ["99", "1"]], [["101", "1"]]), "BTCUSDT", AT
    )
    # the first diff (u 99 <= 101) is dropped, the second (U 100 <= 102 <= u 103) applied
    assert book.feed(snapshot) is Outcome.APPLIED
    assert book.book.top(5) == (((D(100), D(2)), (D(99), D(1))), ((D(101), D(1)),))
    assert counters(book) == (2, 0, 0, 1)
    assert feed(book, parse(frames.binance(104, 106, [["99", "0"]]), AT)) == [Outcome.APPLIED]
    assert feed(book, parse(frames.binance(104, 106), AT)) == [Outcome.STALE]
    assert book.last_sequence == 106 and not book.needs_resync


def test_binance_spot_planted_gap_asks_for_a_resync() -> None:
    book = BinanceSpotBook("BTCUSDT")
    book.feed(
        binance_wire.parse_depth_snapshot(
            frames.binance_rest(10, [["100", "1"]], []), "BTCUSDT", AT
        )
    )
    assert feed(book, binance_wire.parse_depth(frames.binance(11, 12), AT)) == [Outcome.APPLIED]
    # update ids 13-14 never arrive
    outcome = feed(book, binance_wire.parse_depth(frames.binance(15, 16, [["98", "1"]]), AT))
    assert outcome == [Outcome.GAP]
    assert book.needs_resync and len(book.book) == 0
    assert (book.gaps[-1].expected, book.gaps[-1].got) == ("U == 13", "U = 15")
    assert feed(book, binance_wire.parse_depth(frames.binance(17, 18), AT)) == [Outcome.BUFFERED]
    fresh = frames.binance_rest(15, [["100", "1"]], [["101", "1"]])
    assert book.feed(binance_wire.parse_depth_snapshot(fresh, "BTCUSDT", AT)) is Outcome.APPLIED
    assert not book.needs_resync and book.last_sequence == 18
    assert book.book.best_bid == (D(100), D(1)) and D(98) in dict(book.book.top()[0])
    assert counters(book) == (5, 1, 1, 0)  # 2 snapshots, 12, then 16 and 18 replayed


def test_binance_spot_snapshot_older_than_the_buffer_is_a_gap() -> None:
    book = BinanceSpotBook("BTCUSDT")
    book.feed(binance_wire.parse_depth(frames.binance(50, 60), AT)[0])
    snapshot = binance_wire.parse_depth_snapshot(frames.binance_rest(40, [], []), "BTCUSDT", AT)
    assert book.feed(snapshot) is Outcome.GAP
    assert book.needs_resync and book.counters.gaps == 1


# --- Binance futures ------------------------------------------------------------------------


def test_binance_futures_chains_pu_and_detects_a_gap() -> None:
    book = BinanceFuturesBook("BTCUSDT")
    parse = binance_wire.parse_depth
    snap = binance_wire.parse_depth_snapshot(
        frames.binance_rest(100, [["10", "1"]], [["11", "1"]]), "BTCUSDT", AT
    )
    assert feed(book, parse(frames.binance(90, 99, pu=89), AT)) == [Outcome.BUFFERED]
    assert feed(book, parse(frames.binance(95, 105, [["10", "2"]], pu=94), AT)) == [
        Outcome.BUFFERED
    ]
    assert book.feed(snap) is Outcome.APPLIED  # u 99 < 100 dropped; U 95 <= 100 <= u 105 applied
    assert book.book.best_bid == (D(10), D(2))
    assert feed(book, parse(frames.binance(106, 110, pu=105), AT)) == [Outcome.APPLIED]
    assert feed(book, parse(frames.binance(116, 120, pu=115), AT)) == [Outcome.GAP]
    assert (book.gaps[-1].expected, book.gaps[-1].got) == ("pu == 110", "pu = 115")
    assert book.needs_resync and counters(book) == (3, 1, 0, 1)


# --- Bybit ----------------------------------------------------------------------------------


def test_bybit_chains_u_and_resyncs_on_the_next_snapshot() -> None:
    book = BybitBook("BTCUSDT")
    parse = bybit_wire.parse_depth
    assert feed(book, parse(frames.bybit("delta", 7), AT)) == [Outcome.WAITING]
    assert feed(book, parse(frames.bybit("snapshot", 7, [["100", "1"]], [["101", "1"]]), AT)) == [
        Outcome.APPLIED
    ]
    assert feed(book, parse(frames.bybit("delta", 8, [["100", "0"]]), AT)) == [Outcome.APPLIED]
    assert feed(book, parse(frames.bybit("delta", 8), AT)) == [Outcome.STALE]
    assert feed(book, parse(frames.bybit("delta", 10), AT)) == [Outcome.GAP]
    assert book.needs_resync and book.gaps[-1].expected == "u == 9"
    assert feed(book, parse(frames.bybit("delta", 11), AT)) == [Outcome.WAITING]
    assert feed(book, parse(frames.bybit("snapshot", 12, [["99", "3"]]), AT)) == [Outcome.APPLIED]
    assert not book.needs_resync and book.book.top() == (((D(99), D(3)),), ())
    assert counters(book) == (3, 1, 1, 1)


def test_bybit_u_1_is_a_restart_that_overwrites_the_book() -> None:
    book = BybitBook("BTCUSDT")
    parse = bybit_wire.parse_depth
    feed(book, parse(frames.bybit("snapshot", 500, [["100", "1"]], [["101", "1"]]), AT))
    assert feed(book, parse(frames.bybit("delta", 1, [["98", "4"]], [["99", "2"]]), AT)) == [
        Outcome.APPLIED
    ]
    assert book.book.top() == (((D(98), D(4)),), ((D(99), D(2)),))
    assert feed(book, parse(frames.bybit("delta", 2), AT)) == [Outcome.APPLIED]
    assert book.counters.restarts == 1 and book.counters.gaps == 0


# --- OKX ------------------------------------------------------------------------------------


def test_okx_chains_prev_seq_id() -> None:
    book = OkxBook("BTC-USDT")
    parse = okx_wire.parse_depth
    assert feed(
        book, parse(frames.okx("snapshot", -1, 100, [["100", "1"]], [["101", "1"]]), AT)
    ) == [Outcome.APPLIED]
    assert feed(book, parse(frames.okx("update", 100, 113, [["100.5", "2"]]), AT)) == [
        Outcome.APPLIED
    ]
    assert feed(book, parse(frames.okx("update", 113, 113), AT)) == [Outcome.APPLIED]  # no change
    assert book.book.best_bid == (D("100.5"), D(2))
    assert feed(book, parse(frames.okx("update", 130, 140), AT)) == [Outcome.GAP]
    assert (book.gaps[-1].expected, book.gaps[-1].got) == ("prevSeqId == 113", "prevSeqId = 130")
    assert feed(book, parse(frames.okx("update", 140, 150), AT)) == [Outcome.WAITING]
    assert feed(book, parse(frames.okx("snapshot", -1, 160, [["99", "1"]]), AT)) == [
        Outcome.APPLIED
    ]
    assert counters(book) == (4, 1, 1, 0) and not book.needs_resync


# --- Coinbase -------------------------------------------------------------------------------


def test_coinbase_sequence_gap_drops_every_book_of_the_connection() -> None:
    conn = CoinbaseConnection()
    parse = coinbase_wire.parse_depth
    snap = frames.coinbase(
        1,
        ("snapshot", "BTC-USD", [["100", "1"]], [["101", "1"]]),
        ("snapshot", "ETH-USD", [["10", "1"]], [["11", "1"]]),
    )
    assert feed(conn, parse(snap, AT)) == [Outcome.APPLIED, Outcome.APPLIED]
    btc, eth = conn.books["BTC-USD"], conn.books["ETH-USD"]
    conn.note(2, AT)  # a heartbeats frame on the same connection
    assert feed(conn, parse(frames.coinbase(3, ("update", "BTC-USD", [["100", "0"]], [])), AT)) == [
        Outcome.APPLIED
    ]
    assert feed(conn, parse(frames.coinbase(2, ("update", "BTC-USD", [], [])), AT)) == [
        Outcome.STALE
    ]
    both = frames.coinbase(
        3, ("update", "BTC-USD", [["99", "2"]], []), ("update", "BTC-USD", [["99", "3"]], [])
    )  # two events of one frame share its number
    assert feed(conn, parse(both, AT)) == [Outcome.APPLIED, Outcome.APPLIED]
    assert btc.book.best_bid == (D(99), D(3))
    # frame 4 is lost
    assert feed(conn, parse(frames.coinbase(5, ("update", "ETH-USD", [], [])), AT)) == [Outcome.GAP]
    assert btc.needs_resync and eth.needs_resync and btc.counters.gaps == eth.counters.gaps == 1
    assert eth.gaps[-1].expected == "sequence_num == 4"
    resub = frames.coinbase(6, ("snapshot", "ETH-USD", [["10", "2"]], []))
    assert feed(conn, parse(resub, AT)) == [Outcome.APPLIED]
    assert not eth.needs_resync and eth.counters.resyncs == 1 and btc.needs_resync
    assert counters(btc) == (4, 1, 0, 1)


# --- Hyperliquid ----------------------------------------------------------------------------


def test_hyperliquid_every_push_replaces_the_book_older_ones_ignored() -> None:
    book = HyperliquidBook("BTC")
    parse = hyperliquid_wire.parse_depth
    assert feed(book, parse(frames.hyperliquid(2000, [["100", "1"]], [["101", "1"]]), AT)) == [
        Outcome.APPLIED
    ]
    assert feed(book, parse(frames.hyperliquid(1000, [["1", "1"]], []), AT)) == [Outcome.STALE]
    assert feed(book, parse(frames.hyperliquid(3000, [["99", "2"]], [["100", "1"]]), AT)) == [
        Outcome.APPLIED
    ]
    assert book.book.top() == (((D(99), D(2)),), ((D(100), D(1)),))
    assert counters(book) == (2, 0, 0, 1)
    pushed = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=3)
    assert book.stale_for(pushed + timedelta(seconds=5)) == timedelta(seconds=5)


# --- shared ---------------------------------------------------------------------------------


def test_a_crossed_book_is_counted() -> None:
    book = OkxBook("BTC-USDT")
    feed(
        book,
        okx_wire.parse_depth(frames.okx("snapshot", -1, 1, [["100", "1"]], [["101", "1"]]), AT),
    )
    feed(book, okx_wire.parse_depth(frames.okx("update", 1, 2, [["102", "1"]]), AT))
    assert book.book.crossed and book.counters == Counters(updates=2, crossed=1)


@pytest.mark.parametrize(
    ("exchange", "market_type", "rules"),
    [
        ("binance", "spot", BinanceSpotBook),
        ("binance", "perps", BinanceFuturesBook),
        ("bybit", "perps", BybitBook),
        ("okx", "spot", OkxBook),
        ("hyperliquid", "perps", HyperliquidBook),
    ],
)
def test_series_book_picks_the_rules(exchange: str, market_type: str, rules: type) -> None:
    book = series_book(exchange, market_type, "X")
    assert type(book) is rules and book.symbol == "X"


def test_series_book_refuses_unknown_naming_the_known() -> None:
    with pytest.raises(
        InvalidRequest, match="no book rules for coinbase spot; known: binance spot"
    ):
        series_book("coinbase", "spot", "BTC-USD")
