"""Coinbase Advanced Trade's market-data WebSocket (spot): subscriptions, frames, parser.

    {"type":"subscribe","product_ids":["BTC-USD"],"channel":"candles"}
      -> {"channel":"subscriptions","client_id":"","timestamp":"2025-01-06T12:12:30.5Z",
          "sequence_num":0,"events":[{"subscriptions":{"candles":["BTC-USD"]}}]}

Every message is an envelope `{"channel","client_id","timestamp","sequence_num","events"}`
(`sequence_num` counts the connection's messages, not a product's). Channels Kirby reads:
`candles` (5-minute buckets only, updated every second), `market_trades` and `heartbeats`.

Coinbase sends no closed flag: a bucket is closed once the envelope's `timestamp` has
reached its end (the push after the boundary carries the bucket's final state). Every other
interval of the catalog (`POLLED_INTERVALS`) is not on the WebSocket at all: the collector
takes it from REST candles at each minute's close and marks it polled.

Rules: a subscription to `heartbeats` (sent once, on connect: `KEEP_ALIVE.greeting`) keeps
quiet channels open (Coinbase closes them after 60-90 s without one); about 8 connections
and 8 unauthenticated messages a second per IP.

Depth (`parse_depth`: `level2` frames) parses into `kirby_core.books.BookUpdate`s for the
book rules there; no feed subscribes to depth yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from kirby_core.books.book import BookUpdate, load_depth_frame, parse_levels, text_sides
from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges.base import check_candle, field, parse_decimal, parse_int
from kirby_core.exchanges.feeds import (
    TAKER_SIDES,
    ChannelError,
    ConnectionLimits,
    DepthChannel,
    KeepAlive,
    Pong,
    SubscriptionAck,
    Trade,
    TradesUpdate,
    WsMessage,
    compact,
    items,
    load_frame,
    text,
)
from kirby_core.models import Candle, CandleUpdate

STREAMED_INTERVAL = "5m"
"""The only candles the WebSocket carries."""
BUCKET = timedelta(minutes=5)
POLLED_INTERVALS = ("1m", "15m", "1d")
"""The catalog's intervals Kirby takes from REST candles at minute close: those the REST
client serves (`coinbase.INTERVALS`; Coinbase has no 4h candles) and Kirby catalogs."""

STREAMED_DATASETS = {"spot": ("candles", "trades")}
POLLED_DATASETS: dict[str, tuple[str, ...]] = {}
_CHANNELS = {"candles": "candles", "trades": "market_trades"}
_URL = "wss://advanced-trade-ws.coinbase.com"

KEEP_ALIVE = KeepAlive(
    ping_frame=None,
    ping_seconds=None,
    idle_close_seconds=60,
    greeting=compact({"type": "subscribe", "product_ids": [], "channel": "heartbeats"}),
)
LIMITS = {
    "spot": ConnectionLimits(
        streams_per_connection=None,
        args_per_subscribe=None,
        subscribe_chars=None,
        messages_per_second=8,
        subscribes_per_hour=None,
        max_connection_seconds=None,
        new_connections=(8, 1.0),
    )
}


def url(market_type: str, dataset: str) -> str:
    return _URL


def subscription(
    market_type: str, dataset: str, symbol: str, interval: str | None = None
) -> dict[str, str]:
    """{"channel":"candles","product_id":"BTC-USD"}; candles are 5m only."""
    if dataset not in STREAMED_DATASETS.get(market_type, ()):
        raise InvalidRequest(
            f"Coinbase {market_type} streams no {dataset!r}; streamed: "
            f"{', '.join(STREAMED_DATASETS.get(market_type, ()))}"
        )
    if dataset == "candles" and interval != STREAMED_INTERVAL:
        raise InvalidRequest(
            f"Coinbase streams {STREAMED_INTERVAL} candles only, not {interval!r}; "
            f"{', '.join(POLLED_INTERVALS)} are polled from REST"
        )
    return {"channel": _CHANNELS[dataset], "product_id": symbol}


def subscribe_frames(
    market_type: str, subscriptions: Sequence[dict[str, str]], request_id: int
) -> list[str]:
    return _frames("subscribe", subscriptions)


def unsubscribe_frames(
    market_type: str, subscriptions: Sequence[dict[str, str]], request_id: int
) -> list[str]:
    return _frames("unsubscribe", subscriptions)


def _frames(kind: str, subscriptions: Sequence[dict[str, str]]) -> list[str]:
    """One request per channel, with every product of that channel."""
    products: dict[str, list[str]] = {}
    for sub in subscriptions:
        listed = products.setdefault(sub["channel"], [])
        if sub["product_id"] not in listed:
            listed.append(sub["product_id"])
    return [
        compact({"type": kind, "product_ids": ids, "channel": channel})
        for channel, ids in products.items()
    ]


def parse_frame(raw: str | bytes, received_at: datetime) -> tuple[WsMessage, ...]:
    where = "Coinbase WS"
    message = load_frame(raw, where)
    if not isinstance(message, dict):
        raise ExchangeProtocolError(f"{where}: expected an object, got {message!r:.200}")
    if message.get("type") == "error":
        return (ChannelError(f"Coinbase: {message.get('message')!s:.300}"),)
    channel = field(message, "channel", where)
    events = items(field(message, "events", f"{where} {channel}"), f"{where} {channel}")
    if channel == "heartbeats":
        return (Pong(),)
    if channel == "subscriptions":
        listed = [field(e, "subscriptions", where) for e in events]
        return (SubscriptionAck("subscribe", listed[0] if listed else {}),)
    if channel == "candles":
        at = parse_timestamp(field(message, "timestamp", where), where)
        return tuple(
            _candle(row, at)
            for event in events
            for row in items(field(event, "candles", f"{where} candles"), f"{where} candles")
        )
    if channel == "market_trades":
        return _trades(events)
    raise ExchangeProtocolError(
        f"{where}: unknown channel {channel!r}; expected candles, market_trades, heartbeats, "
        "subscriptions"
    )


def parse_timestamp(value: object, where: str) -> datetime:
    """RFC 3339 with up to nanoseconds ("2025-01-06T12:12:30.123456789Z") -> UTC, to the
    microsecond."""
    stamp = text(value, "timestamp", where)
    head, dot, tail = stamp.removesuffix("Z").partition(".")
    fraction = tail[:6].ljust(6, "0") if dot else "000000"
    try:
        if not stamp.endswith("Z") or not fraction.isdigit():
            raise ValueError(stamp)
        return datetime.fromisoformat(f"{head}.{fraction}").replace(tzinfo=UTC)
    except ValueError:
        raise ExchangeProtocolError(f"{where}: {stamp!r:.80} is not an RFC 3339 UTC time") from None


def _candle(row: object, at: datetime) -> CandleUpdate:
    """{"start":"1736165400","high":"97020.00","low":"97000.00","open":"97001.10",
    "close":"97010.00","volume":"12.34567890","product_id":"BTC-USD"}   (start: seconds)"""
    where = "Coinbase WS candles"
    symbol = text(field(row, "product_id", where), "product_id", where)
    where = f"{where} {symbol}"
    start = text(field(row, "start", where), "start", where)
    if not start.isdigit():
        raise ExchangeProtocolError(f"{where}: 'start' must be epoch seconds, got {start!r:.80}")
    opened = datetime.fromtimestamp(int(start), UTC)
    candle = Candle(
        time=opened,
        open=parse_decimal(field(row, "open", where), "open", where),
        high=parse_decimal(field(row, "high", where), "high", where),
        low=parse_decimal(field(row, "low", where), "low", where),
        close=parse_decimal(field(row, "close", where), "close", where),
        volume=parse_decimal(field(row, "volume", where), "volume", where),
    )
    closed = opened + BUCKET <= at
    return CandleUpdate(symbol, STREAMED_INTERVAL, check_candle(candle, where), closed)


def _trades(events: list[Any]) -> tuple[WsMessage, ...]:
    """{"type":"update","trades":[{"trade_id":"12345","product_id":"BTC-USD",
    "price":"97001.10","size":"0.01","side":"BUY","time":"2025-01-06T12:12:29.998000000Z"}]}
    (newest first; `side` is the taker's)"""
    where = "Coinbase WS market_trades"
    by_product: dict[str, list[Trade]] = {}
    for event in events:
        for row in items(field(event, "trades", where), where):
            symbol = text(field(row, "product_id", where), "product_id", where)
            side = str(field(row, "side", where)).lower()
            if side not in TAKER_SIDES:
                raise ExchangeProtocolError(f"{where}: side must be BUY or SELL, got {side!r:.80}")
            by_product.setdefault(symbol, []).append(
                Trade(
                    time=parse_timestamp(field(row, "time", where), where),
                    trade_id=text(field(row, "trade_id", where), "trade_id", where),
                    price=parse_decimal(field(row, "price", where), "price", where),
                    size=parse_decimal(field(row, "size", where), "size", where),
                    side=side,
                )
            )
    return tuple(
        TradesUpdate(symbol, tuple(sorted(trades, key=lambda t: t.time)))
        for symbol, trades in by_product.items()
    )


# --- depth (order books: kirby_core.books) ------------------------------------------------

_BOOK_SIDES = ("bid", "offer")


class _Level2Row(msgspec.Struct, gc=False):
    side: str
    price_level: str
    new_quantity: str


class _Level2Event(msgspec.Struct, gc=False):
    type: Literal["snapshot", "update"]
    product_id: str
    updates: list[_Level2Row]


class _Level2Frame(msgspec.Struct, gc=False):
    channel: Literal["l2_data"]
    timestamp: str
    sequence_num: int
    events: list[_Level2Event]


DEPTH_DECODER = msgspec.json.Decoder(_Level2Frame)
"""The typed decoder of depth frames (`bench.books` times it alone: the engine's limit)."""


def parse_depth(raw: str | bytes, received_at: datetime) -> tuple[BookUpdate, ...]:
    """A `level2` frame (its envelope says channel "l2_data"), one update per event::

        {"channel":"l2_data","client_id":"","timestamp":"2025-01-06T12:12:30.123456789Z",
         "sequence_num":7,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[
         {"side":"bid","event_time":"2025-01-06T12:12:30.1Z","price_level":"97000.10",
          "new_quantity":"0.5"},{"side":"offer",...}]}]}

    then `"type":"update"` events (new_quantity is absolute, "0" deletes). Every update of
    the frame carries the frame's `sequence_num`: the connection's count."""
    try:  # the fast path; anything unexpected goes the checked way, which names it
        frame = DEPTH_DECODER.decode(raw)
        at = parse_timestamp(frame.timestamp, "Coinbase WS level2")
        updates = [_book_event(event, frame.sequence_num, at) for event in frame.events]
        if None not in updates:
            return tuple(updates)  # type: ignore[arg-type]
    except msgspec.DecodeError:
        pass
    return _checked_depth(load_depth_frame(raw, "Coinbase WS level2"))


def _checked_depth(message: Any) -> tuple[BookUpdate, ...]:
    where = "Coinbase WS level2"
    if field(message, "channel", where) != "l2_data":
        raise ExchangeProtocolError(f"{where}: not an l2_data frame: {message!r:.200}")
    sequence = parse_int(field(message, "sequence_num", where), "sequence_num", where)
    at = parse_timestamp(field(message, "timestamp", where), where)
    return tuple(
        _checked_event(event, sequence, at)
        for event in items(field(message, "events", where), where)
    )


def _book_event(event: _Level2Event, sequence: int, at: datetime) -> BookUpdate | None:
    """One typed event -> its update; None if a level is unreadable (checked way)."""
    bid_prices, bid_sizes, ask_prices, ask_sizes = [], [], [], []
    for row in event.updates:
        side = row.side
        if side == "bid":
            bid_prices.append(row.price_level)
            bid_sizes.append(row.new_quantity)
        elif side == "offer":
            ask_prices.append(row.price_level)
            ask_sizes.append(row.new_quantity)
        else:
            return None
    sides = text_sides(bid_prices, bid_sizes, ask_prices, ask_sizes)
    if sides is None or not event.product_id:
        return None
    bids, asks = sides
    snapshot = event.type == "snapshot"
    return BookUpdate(event.product_id, snapshot, bids, asks, sequence, None, None, at)


def _checked_event(event: object, sequence: int, at: datetime) -> BookUpdate:
    where = "Coinbase WS level2"
    kind = field(event, "type", where)
    if kind not in ("snapshot", "update"):
        raise ExchangeProtocolError(f"{where}: type must be snapshot or update, got {kind!r:.40}")
    symbol = text(field(event, "product_id", where), "product_id", where)
    where = f"{where} {symbol}"
    sides: dict[str, list[list[Any]]] = {"bid": [], "offer": []}
    for row in items(field(event, "updates", where), where):
        side = field(row, "side", where)
        if side not in _BOOK_SIDES:
            raise ExchangeProtocolError(f"{where}: side must be bid or offer, got {side!r:.40}")
        try:
            sides[side].append([row["price_level"], row["new_quantity"]])
        except KeyError:
            sides[side].append(
                [field(row, "price_level", where), field(row, "new_quantity", where)]
            )
    return BookUpdate(
        symbol=symbol,
        snapshot=kind == "snapshot",
        bids=parse_levels(sides["bid"], "bid", where),
        asks=parse_levels(sides["offer"], "offer", where),
        sequence=sequence,
        previous=None,
        first=None,
        time=at,
    )


DEPTH = DepthChannel(
    subscription=lambda market_type, symbol: {"channel": "level2", "product_id": symbol},
    parse=parse_depth,
    connection_sequence="sequence_num",
)
"""The book collector's `level2` channel, numbered per connection by `sequence_num`."""
