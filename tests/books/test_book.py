"""The L2 book: snapshots, deltas (size 0 deletes), best levels, exact top-N, crossed
detection, the level parser's refusals, and the fast path's text levels (sizes kept as
their texts, read as exact Decimals)."""

from __future__ import annotations

import random
import re
import sys
from decimal import Decimal as D
from decimal import InvalidOperation
from typing import NamedTuple

import pytest

from kirby_core.books import L2Book, TextLevels, _levels, ordered_sides, parse_levels, text_levels
from kirby_core.books import book as book_module
from kirby_core.books.book import SIZE_GRAMMAR, ZERO_TEXTS
from kirby_core.errors import ExchangeProtocolError


def book(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> L2Book:
    b = L2Book()
    b.apply_snapshot([(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks])
    return b


def test_snapshot_keeps_positive_levels_sorted_best_first() -> None:
    b = book([("99", "1"), ("100", "2"), ("98", "0")], [("102", "1"), ("101", "3")])
    assert b.best_bid == (D("100"), D("2"))
    assert b.best_ask == (D("101"), D("3"))
    assert b.top(5) == (
        ((D("100"), D("2")), (D("99"), D("1"))),
        ((D("101"), D("3")), (D("102"), D("1"))),
    )
    assert len(b) == 4


def test_delta_sets_inserts_and_deletes() -> None:
    b = book([("100", "1"), ("99", "1")], [("101", "1")])
    b.apply_delta(
        [(D("100"), D("0")), (D("99.5"), D("4.25")), (D("99"), D("7"))],
        [(D("100.5"), D("0.001")), (D("105"), D("0"))],  # 105: absent, deleting it is normal
    )
    assert b.top(10) == (
        ((D("99.5"), D("4.25")), (D("99"), D("7"))),
        ((D("100.5"), D("0.001")), (D("101"), D("1"))),
    )


def test_equal_decimals_are_one_level() -> None:
    b = book([("100.10", "1")], [])
    b.apply_delta([(D("100.1"), D("0"))], [])
    assert b.top(1) == ((), ()) and b.best_bid is None and b.best_ask is None


def test_top_n_is_exact_and_bounded() -> None:
    b = book(
        [(str(100 - i), str(i + 1)) for i in range(30)], [(str(200 + i), "1") for i in range(3)]
    )
    bids, asks = b.top(20)
    assert [p for p, _ in bids] == [D(100 - i) for i in range(20)]
    assert [q for _, q in bids] == [D(i + 1) for i in range(20)]
    assert [p for p, _ in asks] == [D(200), D(201), D(202)]
    with pytest.raises(ValueError, match="at least 1, got 0"):
        b.top(0)


def test_crossed_detection() -> None:
    b = book([("100", "1")], [("101", "1")])
    assert not b.crossed
    b.apply_delta([(D("101"), D("1"))], [])
    assert b.crossed
    b.apply_delta([(D("101"), D("0"))], [])
    assert not b.crossed
    b.apply_delta([], [(D("99"), D("1"))])
    assert b.crossed
    b.clear()
    assert not b.crossed and len(b) == 0


def test_parse_levels_is_exact_and_ignores_extra_columns() -> None:
    assert parse_levels([["97000.10", "0.500", "0", "3"]], "bids", "here") == (
        (D("97000.10"), D("0.500")),
    )


@pytest.mark.parametrize(
    "rows",
    [
        [["abc", "1"]],
        [["100", "-1"]],
        [["0", "1"]],
        [["NaN", "1"]],
        [["100", "Infinity"]],
        [["100"]],
        [None],
        "100",
    ],
)
def test_parse_levels_refuses_bad_levels_naming_them(rows: object) -> None:
    with pytest.raises(ExchangeProtocolError, match=r"here: .*'bids'"):
        parse_levels(rows, "bids", "here")


def test_parse_levels_refuses_beyond_the_limit_and_a_zero_price_after_a_zero_size() -> None:
    assert parse_levels([["1", "0"]], "bids", "here") == ((D(1), D(0)),)
    for rows in ([["0", "0"]], [["1e30", "1"]], [["1", "1e30"]]):
        with pytest.raises(ExchangeProtocolError, match="is not \\[price > 0, size >= 0\\]"):
            parse_levels(rows, "bids", "here")


def test_the_decimal_cache_stays_bounded_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module._PRICES, "SIZE", 2)
    prices = [f"{n}.5" for n in range(1, 6)]
    assert parse_levels([[p, "1"] for p in prices], "bids", "here") == tuple(
        (D(p), D(1)) for p in prices
    )
    assert len(book_module._PRICES) <= 2


def text(rows: list[tuple[str, str]]) -> TextLevels:
    levels = text_levels([p for p, _ in rows], [q for _, q in rows])
    assert levels is not None
    return levels


@pytest.mark.parametrize(
    ("size", "kept"),
    [
        ("0", True),
        ("0.00000000", True),
        ("1.5", True),
        ("10", True),
        ("1" * 30, True),
        ("1." + "5" * 30, True),
        ("1" * 31, False),  # 10^30 and above: the checked way refuses it
        ("0." + "0" * 31, False),
        ("00", False),
        ("01.5", False),
        ("1e-3", False),
        ("-1", False),
        ("+1", False),
        (" 1", False),
        (".5", False),
        ("5.", False),
        ("1,5", False),
        ("", False),
        ("NaN", False),
    ],
)
def test_text_levels_keep_only_plain_sizes(size: str, kept: bool) -> None:
    """What the fast path keeps as text; the rest goes the wire modules' checked way."""
    assert (text_levels(["100"], [size]) is not None) is kept


@pytest.mark.parametrize("price", ["0", "-1", "abc", "1e30", "NaN"])
def test_text_levels_refuse_what_is_no_price(price: str) -> None:
    assert text_levels([price], ["1"]) is None
    assert text_levels(["1", "2"], ["1"]) is None  # counts differ


def test_text_levels_read_as_exact_levels() -> None:
    levels = text([("97000.10", "0.500"), ("96999.9", "0")])
    assert levels == ((D("97000.10"), D("0.500")), (D("96999.9"), D("0")))
    assert levels[1] == (D("96999.9"), D("0")) and len(levels) == 2
    assert list(levels) == [(D("97000.10"), D("0.500")), (D("96999.9"), D("0"))]
    assert levels == text([("97000.1", "0.5"), ("96999.90", "0.0")])
    assert levels != ((D("1"), D("1")),) and text([]) == ()


def test_a_book_fed_texts_stores_them_and_returns_exact_decimals() -> None:
    b = L2Book()
    b.apply_snapshot(text([("100", "1.50"), ("99", "0.0"), ("98", "2")]), text([("101", "3")]))
    assert len(b) == 3  # the zero level is not kept
    b.apply_delta(
        text([("100", "0.00000000"), ("99.5", "4.25")]),
        [(D("100.5"), D("0.001"))],  # Decimal levels and text levels in one book
    )
    bids, asks = b.top(5)
    assert bids == ((D("99.5"), D("4.25")), (D("98"), D("2")))
    assert asks == ((D("100.5"), D("0.001")), (D("101"), D("3")))
    assert all(type(q) is D for _, q in bids + asks)
    assert b.best_bid == (D("99.5"), D("4.25")) and type(b.best_bid[1]) is D
    assert b.best_ask == (D("100.5"), D("0.001"))
    b.apply_delta(text([("101", "1")]), text([("101", "0")]))
    assert b.crossed and b.best_ask == (D("100.5"), D("0.001"))


def test_a_snapshot_of_the_same_prices_keeps_the_order_and_a_new_one_sorts() -> None:
    b = L2Book()
    b.apply_snapshot(text([("100", "1"), ("99", "1")]), text([("101", "1"), ("102", "1")]))
    b.apply_snapshot(text([("99", "5"), ("100", "6")]), text([("102", "7"), ("101", "8")]))
    assert b.top() == (
        ((D("100"), D("6")), (D("99"), D("5"))),
        ((D("101"), D("8")), (D("102"), D("7"))),
    )
    b.apply_snapshot(text([("98", "1"), ("100", "2")]), text([("101", "0"), ("103", "1")]))
    assert b.top() == (((D("100"), D("2")), (D("98"), D("1"))), ((D("103"), D("1")),))


def test_text_levels_and_decimal_levels_build_the_same_book() -> None:
    """Seeded deltas (a quarter of them deletes, sizes written with and without trailing
    zeros) applied as texts to one book and as Decimals to another: equal after each."""
    rng = random.Random(15)
    by_text, by_decimal = L2Book(), L2Book()
    for step in range(300):
        sides: list[list[tuple[str, str]]] = [[], []]
        for _ in range(rng.randint(1, 8)):
            bid = rng.random() < 0.5
            price = f"{100 - rng.randint(1, 40) / 10 if bid else 100 + rng.randint(1, 40) / 10:.1f}"
            size = rng.choice(["0", "0.000", f"{rng.random() * 3:.4f}", f"{rng.randint(1, 9)}.50"])
            sides[0 if bid else 1].append((price, size))
        if step % 100 == 0:
            by_text.apply_snapshot(text(sides[0]), text(sides[1]))
            by_decimal.apply_snapshot(*([(D(p), D(q)) for p, q in s] for s in sides))
        else:
            by_text.apply_delta(text(sides[0]), text(sides[1]))
            by_decimal.apply_delta(*([(D(p), D(q)) for p, q in s] for s in sides))
        assert by_text.top(50) == by_decimal.top(50) and len(by_text) == len(by_decimal)
        assert by_text.crossed == by_decimal.crossed


class Row(NamedTuple):
    """A level as Hyperliquid's decoder returns it: the texts as attributes."""

    px: str
    sz: str


def rows(levels: list[tuple[str, str]]) -> list[Row]:
    return [Row(p, q) for p, q in levels]


def ordered(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> tuple[TextLevels, TextLevels]:
    sides = ordered_sides(rows(bids), rows(asks), "px", "sz")
    assert sides is not None
    return sides


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ([("99", "1"), ("100", "1")], [("101", "1")]),  # bids ascending
        ([("100", "1"), ("100.0", "1")], [("101", "1")]),  # one price twice
        ([("100", "1"), ("1E+2", "1")], [("101", "1")]),  # twice, compared as Decimals
        ([("100", "1")], [("102", "1"), ("101", "1")]),  # asks descending
        ([("100", "1")], [("101", "1"), ("101", "2")]),
        ([("100", "1")], [("101", "1e-3")]),  # no plain size
        ([("abc", "1")], [("101", "1")]),
        ([("100", "1"), ("0", "1")], []),
        ([("99.95", "1"), ("99.951", "1")], []),  # a longer fraction, higher
        ([("9.5", "1"), ("10", "1")], []),  # more integer digits, higher
    ],
)
def test_ordered_sides_refuse_a_side_out_of_order_or_unreadable(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> None:
    assert ordered_sides(rows(bids), rows(asks), "px", "sz") is None


def test_ordered_sides_refuse_a_level_without_the_attributes() -> None:
    assert ordered_sides(rows([("100", "1")]), [object()], "px", "sz") is None
    assert ordered_sides(rows([("100", "1")]), rows([("101", "1")]), "price", "sz") is None
    assert ordered_sides((), [], "px", "sz") is None  # not a list: the checked path


@pytest.mark.parametrize(
    "prices",
    [
        ["100", "99.99", "99.9", "99.09", "99", "9.999", "1", "0.5", "0.05", "0.0001"],
        ["100.5", "100.10", "100.09", "100"],  # trailing zeros are numbers, not texts
        ["1E+3", "999", "1e2", "99.5"],  # exponents: compared as Decimals
    ],
)
def test_ordered_sides_compare_prices_as_numbers(prices: list[str]) -> None:
    sides = ordered_sides(rows([(p, "1") for p in prices]), [], "px", "sz")
    assert sides is not None and sides[0].prices == [D(p) for p in prices]
    asks = ordered_sides([], rows([(p, "1") for p in reversed(prices)]), "px", "sz")
    assert asks is not None and asks[1].prices == [D(p) for p in reversed(prices)]
    assert ordered_sides([], rows([(p, "1") for p in prices]), "px", "sz") is None


def test_ordered_sides_read_best_first() -> None:
    bids, asks = ordered([("100", "1"), ("99.5", "2")], [("101", "0.5")])
    assert bids.ordered and asks.ordered
    assert bids == ((D("100"), D("1")), (D("99.5"), D("2"))) and asks == ((D("101"), D("0.5")),)
    assert bids.sizes == ["1", "2"] and all(type(p) is D for p in bids.prices)


def test_ordered_snapshots_deltas_and_reads_agree_with_a_decimal_book() -> None:
    """Full-book pushes best first (prices repeated, moved, sizes 0 among them) mixed with
    deltas and reads in every order: the same book as one fed Decimals."""
    rng = random.Random(16)
    fast, exact = L2Book(), L2Book()
    for step in range(300):
        mid = 100 + rng.choice([0, 0, 0, 1, -1])
        depth = rng.randint(0, 6)
        sides = (
            [
                (f"{mid - k - 1}", rng.choice(["1.5", "0", f"{rng.random() * 3:.4f}"]))
                for k in range(depth)
            ],
            [
                (f"{mid + k + 1}", rng.choice(["2", f"{rng.random() * 3:.4f}"]))
                for k in range(depth)
            ],
        )
        decimals = [[(D(p), D(q)) for p, q in s] for s in sides]
        if step % 3:
            fast.apply_snapshot(*ordered(*sides))
            exact.apply_snapshot(*decimals)
        else:
            fast.apply_delta(text(sides[0]), text(sides[1]))
            exact.apply_delta(*decimals)
        if step % 2:
            assert fast.crossed == exact.crossed and len(fast) == len(exact)
        if step % 5 == 0:
            assert fast.best_bid == exact.best_bid and fast.best_ask == exact.best_ask
        if step % 7 == 0:
            assert fast.top(4) == exact.top(4)
    assert fast.top(50) == exact.top(50) and len(fast) == len(exact)


def test_the_compiled_loops_hold_no_reference_they_do_not_return() -> None:
    """`_levels` (C) on its accepting, refusing and raising paths: every object handed in
    has the references it had before, once the results are dropped."""
    texts = ["100", "99.5", "0.25", "1e3", "abc", "1"]
    rows_in = [Row("100", "0.25"), Row("99.5", "1"), Row("1e3", "1"), Row("abc", "1")]
    prices = [D("100"), D("99.5")]
    held = [*texts, *rows_in, *prices]

    def calls() -> None:
        _levels.ordered(rows_in[:2], "px", "sz", book_module._PRICES, True)  # accepted
        _levels.ordered(rows_in[:2], "px", "sz", book_module._PRICES, False)  # out of order
        _levels.ordered(rows_in[2:3], "px", "sz", book_module._PRICES, True)  # accepted
        _levels.ordered(rows_in[:1], "px", "nope", book_module._PRICES, True)  # no attribute
        with pytest.raises(InvalidOperation):
            _levels.ordered(rows_in[3:], "px", "sz", book_module._PRICES, True)
        _levels.rows([[texts[0], texts[2]], [texts[1], texts[3]]], book_module._PRICES)
        with pytest.raises(InvalidOperation):
            _levels.rows([[texts[4], texts[5]]], book_module._PRICES)
        levels: dict[D, D | str] = {}
        _levels.apply(levels, [], prices, [texts[2], texts[5]], ZERO_TEXTS, book_module._NEGATED)
        _levels.apply(levels, [], prices, ["0", "0.0"], ZERO_TEXTS, None)
        assert levels == {}

    calls()  # the price cache's own entries made
    before = [sys.getrefcount(value) for value in held]
    for _ in range(10):
        calls()
    assert [sys.getrefcount(value) for value in held] == before


def test_the_compiled_size_check_is_the_size_grammar() -> None:
    """`_levels.plain_sizes` (C) against `SIZE_GRAMMAR` (a regular expression) on seeded
    texts near the grammar: digits, points, signs, exponents, spaces; up to 64 chars."""
    grammar = re.compile(SIZE_GRAMMAR)
    rng = random.Random(17)
    alphabet = "0000111999...-+e ,٣"  # ٣: a digit to Python, not to the grammar
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(20_000)]
    for whole, decimals in [(29, 30), (30, 30), (31, 0), (30, 31), (1, 0), (0, 1)]:
        texts += ["1" * whole + ("." + "5" * decimals if decimals else "")]
        texts += ["0" * whole + ("." + "0" * decimals if decimals else "")]
    kept = [text for text in texts if _levels.plain_sizes([text])]
    assert kept == [text for text in texts if grammar.fullmatch(text)]
    assert len(kept) > 1000  # the seed reaches both answers
