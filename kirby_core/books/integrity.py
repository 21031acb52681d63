"""Each exchange's book integrity rules: which depth message may touch the book, and what a
broken sequence costs.

    Outcome                 what became of one message: applied, buffered, stale, gap, waiting
    Counters, Gap           per series: updates, gaps, resyncs, stale, restarts, crossed;
                            the last gaps recorded (time, what was expected, what came)
    SeriesBook              the L2 book of one series plus its rules (one subclass an exchange)
    BinanceSpotBook         REST snapshot + depthUpdate U/u
    BinanceFuturesBook      REST snapshot + depthUpdate U/u/pu
    BybitBook               orderbook.N snapshot/delta, u + 1, u = 1 a restart
    OkxBook                 books snapshot/update, prevSeqId == previous seqId
    CoinbaseConnection      level2 on one connection: sequence_num counts the connection
    HyperliquidBook         l2Book: every push a full snapshot; only ordering and staleness
    series_book()           the rules of an exchange and market type

A gap drops the book (it is no longer the exchange's) and counts; the book is whole again
when the next snapshot arrives (`resyncs` counts those): for Binance the caller fetches the
REST depth snapshot (messages meanwhile are buffered), for Bybit, OKX and Coinbase it
resubscribes (the exchange sends a snapshot first). Pure: no I/O, no clock; the caller
passes times. Rules checked against the exchanges' docs (each class names its source) and
../shared/EXCHANGES.md.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from kirby_core.books.book import BookUpdate, L2Book
from kirby_core.errors import InvalidRequest


class Outcome(Enum):
    APPLIED = "applied"
    BUFFERED = "buffered"
    """Binance: kept until the REST snapshot arrives, then replayed."""
    STALE = "stale"
    """Older than the book (a duplicate, or before the snapshot): ignored."""
    GAP = "gap"
    """Continuity broken: the book is dropped and needs a resync."""
    WAITING = "waiting"
    """A delta while the book waits for its snapshot (after a gap, or before the first):
    ignored, the snapshot will carry it."""


# the members as module names: `Outcome.APPLIED` is a metaclass lookup (~0.15 us on
# Python 3.11), paid on every message
_APPLIED, _BUFFERED, _STALE, _GAP, _WAITING = (
    Outcome.APPLIED,
    Outcome.BUFFERED,
    Outcome.STALE,
    Outcome.GAP,
    Outcome.WAITING,
)


@dataclass(slots=True)
class Counters:
    updates: int = 0
    """Messages applied to the book (snapshots included)."""
    gaps: int = 0
    resyncs: int = 0
    """Snapshots that made the book whole again after a gap."""
    stale: int = 0
    restarts: int = 0
    """Bybit: books overwritten because the exchange restarted (u = 1)."""
    crossed: int = 0
    """Messages after which the book was crossed."""


@dataclass(frozen=True, slots=True)
class Gap:
    time: datetime
    expected: str
    got: str


GAPS_KEPT = 100
"""Gaps each series remembers (the counters count them all)."""


class SeriesBook:
    """The book of one series and its exchange's rules; feed it that series' messages."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book = L2Book()
        self.counters = Counters()
        self.gaps: deque[Gap] = deque(maxlen=GAPS_KEPT)
        self.synced = False
        self.last_sequence: int | None = None
        self.last_time: datetime | None = None
        self._after_gap = False

    def feed(self, update: BookUpdate) -> Outcome:
        raise NotImplementedError

    @property
    def needs_resync(self) -> bool:
        """A gap dropped the book and no snapshot has replaced it yet (before the first
        snapshot `synced` is False too, but that is no resync)."""
        return self._after_gap

    def stale_for(self, now: datetime) -> timedelta | None:
        """How long since the last applied message (None: none yet)."""
        return None if self.last_time is None else now - self.last_time

    def _replace(self, update: BookUpdate) -> Outcome:
        self.book.apply_snapshot(update.bids, update.asks)
        self.synced = True
        if self._after_gap:
            self.counters.resyncs += 1
            self._after_gap = False
        return self._applied(update)

    def _delta(self, update: BookUpdate) -> Outcome:
        book = self.book
        book.apply_delta(update.bids, update.asks)
        # `_applied` inlined: every delta takes this path, and a call costs ~0.3 us
        self.last_sequence = update.sequence
        self.last_time = update.time
        counters = self.counters
        counters.updates += 1
        if book.crossed:
            counters.crossed += 1
        return _APPLIED

    def _applied(self, update: BookUpdate) -> Outcome:
        self.last_sequence = update.sequence
        self.last_time = update.time
        counters = self.counters
        counters.updates += 1
        if self.book.crossed:
            counters.crossed += 1
        return _APPLIED

    def _stale(self) -> Outcome:
        self.counters.stale += 1
        return _STALE

    def _gap(self, time: datetime, expected: str, got: str) -> Outcome:
        self.counters.gaps += 1
        self.gaps.append(Gap(time, expected, got))
        self.synced = False
        self._after_gap = True
        self.book.clear()
        return _GAP


class _BinanceBook(SeriesBook):
    """Binance: a REST depth snapshot (`lastUpdateId`) then the `depthUpdate` diffs. Diffs
    before the snapshot are buffered and replayed on it; a `BookUpdate` with `snapshot`
    True is the parsed REST snapshot."""

    BUFFER = 10_000

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self._buffer: deque[BookUpdate] = deque(maxlen=self.BUFFER)
        self._first = True

    def feed(self, update: BookUpdate) -> Outcome:
        if update.snapshot:
            return self._load(update)
        if not self.synced:
            self._buffer.append(update)
            return _BUFFERED
        return self._step(update)

    def _load(self, snapshot: BookUpdate) -> Outcome:
        self._replace(snapshot)
        self._first = True
        pending = list(self._buffer)
        self._buffer.clear()
        for update in pending:
            if self.synced:
                self._step(update)
            else:
                self._buffer.append(update)
        return _APPLIED if self.synced else _GAP

    def _step(self, update: BookUpdate) -> Outcome:
        raise NotImplementedError

    def _broken(self, update: BookUpdate, expected: str, got: str) -> Outcome:
        outcome = self._gap(update.time, expected, got)
        self._buffer.append(update)  # the resync's snapshot may still need it
        return outcome


class BinanceSpotBook(_BinanceBook):
    """Binance spot, "How to manage a local order book correctly" (developers.binance.com,
    spot WebSocket streams): drop every event with `u <= lastUpdateId`; the first applied
    event has `U <= lastUpdateId + 1 <= u`; each next one `U == previous u + 1`; otherwise
    fetch a new snapshot."""

    def _step(self, update: BookUpdate) -> Outcome:
        last = self.last_sequence
        assert last is not None and update.first is not None
        if update.sequence <= last:
            return self._stale()
        if update.first > last + 1 or (not self._first and update.first != last + 1):
            rule = "<=" if self._first else "=="
            return self._broken(update, f"U {rule} {last + 1}", f"U = {update.first}")
        self._first = False
        return self._delta(update)


class BinanceFuturesBook(_BinanceBook):
    """Binance USD-M futures, "How to manage a local order book correctly"
    (developers.binance.com, derivatives/usds-margined-futures): drop every event with
    `u < lastUpdateId`; the first applied event has `U <= lastUpdateId <= u`; each next
    one `pu == previous u`; otherwise fetch a new snapshot."""

    def _step(self, update: BookUpdate) -> Outcome:
        last = self.last_sequence
        assert last is not None and update.first is not None
        if self._first:
            if update.sequence < last:
                return self._stale()
            if update.first > last:
                return self._broken(update, f"U <= {last}", f"U = {update.first}")
            self._first = False
            return self._delta(update)
        if update.sequence <= last:
            return self._stale()
        if update.previous != last:
            return self._broken(update, f"pu == {last}", f"pu = {update.previous}")
        return self._delta(update)


class BybitBook(SeriesBook):
    """Bybit v5 `orderbook.{depth}.{symbol}` (bybit-exchange.github.io/docs/v5/websocket/
    public/orderbook): a snapshot replaces the book; each delta's `u` is the previous
    `u + 1`; `u = 1` is a snapshot after a service restart: overwrite the book."""

    def feed(self, update: BookUpdate) -> Outcome:
        if update.sequence == 1:  # the exchange restarted: its data is a snapshot
            if self.last_sequence is not None:
                self.counters.restarts += 1
            return self._replace(update)
        if update.snapshot:
            return self._replace(update)
        if not self.synced:
            return _WAITING
        last = self.last_sequence
        assert last is not None
        if update.sequence <= last:
            return self._stale()
        if update.sequence != last + 1:
            return self._gap(update.time, f"u == {last + 1}", f"u = {update.sequence}")
        return self._delta(update)


class OkxBook(SeriesBook):
    """OKX v5 `books` (okx.com/docs-v5, order book channel): the snapshot has `prevSeqId`
    -1; each update's `prevSeqId` is the previous message's `seqId` (steps are not 1, and
    equal ids mean no change). The CRC32 `checksum` is not checked: it arrives as 0."""

    def feed(self, update: BookUpdate) -> Outcome:
        if update.snapshot:
            return self._replace(update)
        if not self.synced:
            return _WAITING
        if update.previous != self.last_sequence:
            return self._gap(
                update.time, f"prevSeqId == {self.last_sequence}", f"prevSeqId = {update.previous}"
            )
        return self._delta(update)


class CoinbaseBook(SeriesBook):
    """One product's level2 book; its connection (`CoinbaseConnection`) checks sequences."""

    def feed(self, update: BookUpdate) -> Outcome:
        if update.snapshot:
            return self._replace(update)
        if not self.synced:
            return _WAITING
        return self._delta(update)


class CoinbaseConnection:
    """Coinbase Advanced Trade `level2` (docs.cdp.coinbase.com, Advanced Trade WebSocket
    channels): every frame's `sequence_num` counts the connection's frames, all channels
    and products together; a skipped number is a lost frame, and any level2 book on the
    connection may have lost it, so a gap drops them all (resync: resubscribe level2, the
    exchange answers with snapshots). Events of one frame share its number. Frames of other
    channels on the connection must be noted (`note`) or they read as gaps."""

    def __init__(self) -> None:
        self.books: dict[str, CoinbaseBook] = {}
        self.last_sequence: int | None = None

    def book(self, symbol: str) -> CoinbaseBook:
        found = self.books.get(symbol)
        if found is None:
            found = self.books[symbol] = CoinbaseBook(symbol)
        return found

    def note(self, sequence: int, time: datetime) -> bool:
        """A frame's number seen; False if it skipped some (every book dropped)."""
        last = self.last_sequence
        if last is not None and sequence > last + 1:
            for book in self.books.values():
                book._gap(time, f"sequence_num == {last + 1}", f"sequence_num = {sequence}")
        if last is None or sequence > last:
            self.last_sequence = sequence
        return last is None or sequence <= last + 1

    def feed(self, update: BookUpdate) -> Outcome:
        book = self.book(update.symbol)
        last = self.last_sequence
        if last is not None and update.sequence < last:
            return book._stale()
        if not self.note(update.sequence, update.time) and not update.snapshot:
            return _GAP
        return book.feed(update)


class HyperliquidBook(SeriesBook):
    """Hyperliquid `l2Book` (hyperliquid.gitbook.io, WebSocket subscriptions): every push is
    the whole book (up to 20 levels a side) with no sequence number: no gap is possible,
    only a push older than the book (ignored) and silence (`stale_for`)."""

    def feed(self, update: BookUpdate) -> Outcome:
        if self.last_sequence is not None and update.sequence < self.last_sequence:
            return self._stale()
        return self._replace(update)


_RULES: dict[tuple[str, str], type[SeriesBook]] = {
    ("binance", "spot"): BinanceSpotBook,
    ("binance", "perps"): BinanceFuturesBook,
    ("bybit", "spot"): BybitBook,
    ("bybit", "perps"): BybitBook,
    ("okx", "spot"): OkxBook,
    ("okx", "perps"): OkxBook,
    ("hyperliquid", "perps"): HyperliquidBook,
}


def series_book(exchange: str, market_type: str, symbol: str) -> SeriesBook:
    """A book with the rules of `exchange`'s `market_type` (Coinbase: `CoinbaseConnection`,
    whose rules span a connection)."""
    rules = _RULES.get((exchange, market_type))
    if rules is None:
        allowed = ", ".join(f"{e} {m}" for e, m in _RULES)
        raise InvalidRequest(
            f"no book rules for {exchange} {market_type}; known: {allowed} "
            "(coinbase spot: CoinbaseConnection)"
        )
    return rules(symbol)
