"""Rows as Kirby stores them: candles, funding rates, open interest.

Values are exact: prices, sizes and rates are `Decimal` built from the exchange's own
strings, never floats. Times are timezone-aware UTC datetimes. Funding and open-interest
rows are minute-aligned; a candle's `time` is its open time.

The row types are NamedTuples on purpose: the bulk writer hands them to asyncpg column by
column without any per-row conversion.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, NamedTuple

import msgspec


class Candle(NamedTuple):
    """One OHLCV candle of a starlisting; `trade_count` is None when the source lacks it."""

    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int | None = None


class CandleRow(NamedTuple):
    """A candle with the starlisting it belongs to: the writer's input."""

    starlisting_id: int
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int | None = None


class FundingRate(NamedTuple):
    """Funding state of a trading pair for one minute.

    `settled_funding_rate`/`settled_premium` come from the exchange's funding history (the
    rate actually paid for the hour); `predicted_funding_rate`/`premium` and the prices come
    from the live feed (the current hour's running rate). They mean different things, so
    neither overwrites the other.
    """

    time: datetime
    settled_funding_rate: Decimal | None = None
    settled_premium: Decimal | None = None
    predicted_funding_rate: Decimal | None = None
    premium: Decimal | None = None
    mark_price: Decimal | None = None
    oracle_price: Decimal | None = None
    mid_price: Decimal | None = None
    next_funding_time: datetime | None = None


class FundingRateRow(NamedTuple):
    trading_pair_id: int
    time: datetime
    settled_funding_rate: Decimal | None = None
    settled_premium: Decimal | None = None
    predicted_funding_rate: Decimal | None = None
    premium: Decimal | None = None
    mark_price: Decimal | None = None
    oracle_price: Decimal | None = None
    mid_price: Decimal | None = None
    next_funding_time: datetime | None = None


class OpenInterest(NamedTuple):
    """Open interest of a trading pair for one minute; `open_interest` is in coins and
    `notional` = open interest x mark price."""

    time: datetime
    open_interest: Decimal | None = None
    notional: Decimal | None = None
    day_base_volume: Decimal | None = None
    day_notional_volume: Decimal | None = None


class OpenInterestRow(NamedTuple):
    trading_pair_id: int
    time: datetime
    open_interest: Decimal | None = None
    notional: Decimal | None = None
    day_base_volume: Decimal | None = None
    day_notional_volume: Decimal | None = None


class CandleUpdate(NamedTuple):
    """A live candle push: which series it belongs to (`coin`: the exchange's symbol on the
    wire, Hyperliquid's coin) and its current state."""

    coin: str
    interval: str
    candle: Candle
    closed: bool | None = None
    """The exchange's closed flag: True on the final state of the candle, False while it
    forms; None where the exchange sends none (Hyperliquid: a newer candle closes it)."""


class AssetContextUpdate(NamedTuple):
    """A live asset-context push, already split into this minute's funding and OI rows."""

    coin: str
    received_at: datetime
    funding: FundingRate
    open_interest: OpenInterest


class BookReport(msgspec.Struct, kw_only=True):
    """One exchange's order books in the collector's heartbeat (`kirby_stream.books`):
    counters since the collector started; per pair and minute they are in `book_integrity`."""

    state: Literal["starting", "running", "degraded", "stopped"] = "starting"
    """The worst state of its book connections."""
    books: int = 0
    """Books kept (one per trading pair)."""
    whole: int = 0
    """Books synced and trustworthy now."""
    messages_received: int = 0
    invalid_messages: int = 0
    updates: int = 0
    gaps: int = 0
    resyncs: int = 0
    crossed: int = 0
    stale_ms: int = 0
    samples: int = 0
    """Top-N samples taken (written to `books`)."""
    snapshots_refused: int = 0
    """REST depth snapshots the exchange refused (429/418: over its weight, or banned),
    each retried after its Retry-After (Binance; `kirby_stream.books.gates`)."""


class FeedReport(msgspec.Struct, kw_only=True):
    """One exchange's entry in the collector's heartbeat (`stream_heartbeats.feeds`): what
    the collector writes for each exchange and the API reads back."""

    state: Literal["starting", "running", "degraded", "stopped"] = "starting"
    """The worst state of its connections and polls."""
    last_error: str | None = None
    """Why it is degraded (cannot reach it, a stall, a failed poll)."""
    reconnects: int = 0
    hand_overs: int = 0
    """Connections replaced before the exchange's scheduled disconnect, nothing lost."""
    messages_received: int = 0
    invalid_messages: int = 0
    channel_errors: int = 0
    """Errors the exchange itself sent (a refused subscription...)."""
    outages: int = 0
    """Outage rows recorded for its series."""
    trades: int = 0
    """Trades received (a repeat of a trade not yet flushed is not counted again)."""
    last_message_at: datetime | None = None
    books: BookReport | None = None
    """Its order books, where the collector keeps them."""


def feed_reports(raw: str | bytes | None) -> dict[str, FeedReport]:
    """A heartbeat row's `feeds` (jsonb, as asyncpg hands it over: text): exchange -> its
    report."""
    return msgspec.json.decode(raw or "{}", type=dict[str, FeedReport])
