"""Hyperliquid's wire format: declarations, frame builders and pure parsers.

Everything here is a pure function of its input (no I/O): `hyperliquid.py` feeds it REST
payloads, and `kirby_stream` (which owns the WebSocket) feeds it raw text frames. Parsed
values are exact (`Decimal` from the exchange's strings); anything that does not have the
documented shape raises `ExchangeProtocolError` naming the field and the bad value.

Live funding (`activeAssetCtx.funding`) is the current hour's running, *predicted* rate and
lands in `FundingRate.predicted_funding_rate`; `fundingHistory` gives the rate *settled* for
each past hour and lands in `settled_funding_rate`. They are never mixed.

Depth (`parse_depth`: `l2Book` frames) parses into `kirby_core.books.BookUpdate`s for the
book rules there; no feed subscribes to depth yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any, Literal

import msgspec

from kirby_core.books.book import BookUpdate, Level, load_depth_frame, ordered_sides, parse_levels
from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges.base import (
    check_candle,
    exact_product,
    field,
    parse_decimal,
    parse_int,
    parse_ms,
    parse_optional_decimal,
)
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
    load_frame,
)
from kirby_core.models import AssetContextUpdate, Candle, CandleUpdate, FundingRate, OpenInterest
from kirby_core.timeutil import (
    INTERVAL_SECONDS,
    ensure_utc,
    floor_minute,
    floor_time,
    ms_to_datetime,
)

INTERVALS: tuple[str, ...] = tuple(
    i
    for i in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d", "3d", "1w")
    if i in INTERVAL_SECONDS
)
"""Intervals Hyperliquid publishes that Kirby handles (its `1M` has no fixed length)."""


def check_interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise InvalidRequest(
            f"Hyperliquid has no {interval!r} candles; allowed: {', '.join(INTERVALS)}"
        )
    return interval


# --- WebSocket frames we send ------------------------------------------------------------


def candle_subscription(coin: str, interval: str) -> dict[str, str]:
    return {"type": "candle", "coin": coin, "interval": check_interval(interval)}


def asset_context_subscription(coin: str) -> dict[str, str]:
    return {"type": "activeAssetCtx", "coin": coin}


def trades_subscription(coin: str) -> dict[str, str]:
    return {"type": "trades", "coin": coin}


def subscribe_frame(subscription: dict[str, str]) -> str:
    return _compact({"method": "subscribe", "subscription": subscription})


def unsubscribe_frame(subscription: dict[str, str]) -> str:
    return _compact({"method": "unsubscribe", "subscription": subscription})


def ping_frame() -> str:
    return _compact({"method": "ping"})


def _compact(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


# --- the feed's declaration (`registry.StreamAdapter`) -------------------------------------

_URL = "wss://api.hyperliquid.xyz/ws"
STREAMED_DATASETS = {"perps": ("candles", "funding_rates", "open_interest", "trades")}
"""activeAssetCtx carries funding and open interest together."""
KEEP_ALIVE = KeepAlive(ping_frame=ping_frame(), ping_seconds=None, idle_close_seconds=60)
LIMITS = {
    "perps": ConnectionLimits(
        streams_per_connection=1000,
        args_per_subscribe=1,
        subscribe_chars=None,
        messages_per_second=None,
        subscribes_per_hour=None,
        max_connection_seconds=None,
        new_connections=(30, 60.0),
    )
}
"""1000 subscriptions and 2000 messages a minute per IP; 10 connections is the safe
ceiling, 30 new ones a minute."""


def url(market_type: str, dataset: str) -> str:
    return _URL


def subscription(
    market_type: str, dataset: str, coin: str, interval: str | None = None
) -> dict[str, str]:
    if dataset == "candles":
        return candle_subscription(coin, interval or "")
    if dataset == "trades":
        return trades_subscription(coin)
    if dataset in STREAMED_DATASETS["perps"]:
        return asset_context_subscription(coin)
    raise InvalidRequest(
        f"Hyperliquid streams no {dataset!r}; streamed: {', '.join(STREAMED_DATASETS['perps'])}"
    )


def subscribe_frames(
    market_type: str, subscriptions: Sequence[dict[str, str]], request_id: int
) -> list[str]:
    """One frame a subscription: Hyperliquid takes one per request."""
    return [subscribe_frame(s) for s in subscriptions]


def unsubscribe_frames(
    market_type: str, subscriptions: Sequence[dict[str, str]], request_id: int
) -> list[str]:
    return [unsubscribe_frame(s) for s in subscriptions]


GREETING = "Websocket connection established."
"""The text frame Hyperliquid sends first on every connection (not JSON)."""


def parse_frame(raw: str | bytes, received_at: datetime) -> tuple[HyperliquidMessage, ...]:
    """`parse_ws_message` in the shape every exchange's parser has; the greeting is no
    message."""
    if raw == GREETING:
        return ()
    return (parse_ws_message(raw, received_at),)


# --- WebSocket frames we receive ----------------------------------------------------------


HyperliquidMessage = (
    CandleUpdate | AssetContextUpdate | TradesUpdate | Pong | SubscriptionAck | ChannelError
)
"""What Hyperliquid's frames parse into (a part of `feeds.WsMessage`)."""


def parse_ws_message(raw: str | bytes, received_at: datetime) -> HyperliquidMessage:
    """Parse one text frame; `received_at` (UTC) stamps the minute of asset-context rows."""
    message = load_frame(raw, "Hyperliquid WS")
    channel = field(message, "channel", "Hyperliquid WS frame")
    if channel == "pong":
        return Pong()
    parser = _CHANNELS.get(channel) if isinstance(channel, str) else None
    if parser is None:
        allowed = ", ".join(["pong", *_CHANNELS])
        raise ExchangeProtocolError(
            f"Hyperliquid WS: unknown channel {channel!r}; expected one of {allowed}"
        )
    return parser(field(message, "data", f"Hyperliquid WS {channel}"), ensure_utc(received_at))


def parse_candle(data: object, where: str = "Hyperliquid candle") -> CandleUpdate:
    """One candle object, from a WS push or a candleSnapshot row::

    {"t":1684699200000,"T":1684702799999,"s":"kPEPE","i":"1h","o":"0.001601",
     "c":"0.001604","h":"0.001616","l":"0.001601","v":"520665683.0","n":709}
    """
    coin = field(data, "s", where)
    interval = field(data, "i", where)
    if not isinstance(coin, str) or not isinstance(interval, str):
        raise ExchangeProtocolError(
            f"{where}: 's' and 'i' must be strings, got {coin!r}, {interval!r}"
        )
    candle = Candle(
        time=parse_ms(field(data, "t", where), "t", where),
        open=parse_decimal(field(data, "o", where), "o", where),
        high=parse_decimal(field(data, "h", where), "h", where),
        low=parse_decimal(field(data, "l", where), "l", where),
        close=parse_decimal(field(data, "c", where), "c", where),
        volume=parse_decimal(field(data, "v", where), "v", where),
        trade_count=parse_int(field(data, "n", where), "n", where),
    )
    return CandleUpdate(coin, interval, check_candle(candle, f"{where} {coin} {interval}"))


def _parse_candle_push(data: object, received_at: datetime) -> CandleUpdate:
    if isinstance(data, list):
        raise ExchangeProtocolError("Hyperliquid WS candle: data must be one object, got a list")
    return parse_candle(data, "Hyperliquid WS candle")


def parse_asset_context(data: object, received_at: datetime) -> AssetContextUpdate:
    """An activeAssetCtx push, split into this minute's funding and open-interest rows::

    {"coin":"BTC","ctx":{"funding":"0.0000125","openInterest":"21897.1234","prevDayPx":"64210.0",
     "dayNtlVlm":"1869412345.5","premium":"0.00031","oraclePx":"64950.0","markPx":"64960.0",
     "midPx":"64961.5","impactPxs":["64960.0","64963.0"],"dayBaseVlm":"28950.123"}}

    `premium` and `midPx` may be null.
    """
    where = "Hyperliquid WS activeAssetCtx"
    coin = field(data, "coin", where)
    if not isinstance(coin, str):
        raise ExchangeProtocolError(f"{where}: field 'coin' must be a string, got {coin!r}")
    ctx = field(data, "ctx", where)
    where = f"{where} {coin}"

    def number(name: str) -> Decimal:
        return parse_decimal(field(ctx, name, where), name, where)

    def optional(name: str) -> Decimal | None:
        return parse_optional_decimal(field(ctx, name, where), name, where)

    minute = floor_minute(received_at)
    mark_price = number("markPx")
    open_interest = number("openInterest")
    if open_interest < 0:
        raise ExchangeProtocolError(f"{where}: negative openInterest {open_interest}")
    funding = FundingRate(
        time=minute,
        predicted_funding_rate=number("funding"),
        premium=optional("premium"),
        mark_price=mark_price,
        oracle_price=number("oraclePx"),
        mid_price=optional("midPx"),
        next_funding_time=floor_time(received_at, "1h") + timedelta(hours=1),
    )
    interest = OpenInterest(
        time=minute,
        open_interest=open_interest,
        notional=exact_product(open_interest, mark_price),
        day_base_volume=number("dayBaseVlm"),
        day_notional_volume=number("dayNtlVlm"),
    )
    return AssetContextUpdate(coin, received_at, funding, interest)


_SIDES = {"B": "buy", "A": "sell"}
"""A trade's `side` is the taker's: B (bid) bought, A (ask) sold."""


def parse_trades(data: object, received_at: datetime) -> TradesUpdate:
    """A `trades` push: the trades of one coin, oldest first (on subscribing, the recent
    ones again)::

    [{"coin":"BTC","side":"B","px":"97001.0","sz":"0.01","time":1736165580998,
      "hash":"0x...","tid":123456789,"users":["0x...","0x..."]}]
    """
    where = "Hyperliquid WS trades"
    rows = data if isinstance(data, list) else None
    if not rows:
        raise ExchangeProtocolError(f"{where}: data must be a non-empty list, got {data!r:.200}")
    coin = field(rows[0], "coin", where)
    if not isinstance(coin, str) or not coin:
        raise ExchangeProtocolError(f"{where}: field 'coin' must be a string, got {coin!r:.80}")
    where = f"{where} {coin}"
    trades = []
    for row in rows:
        if field(row, "coin", where) != coin:
            raise ExchangeProtocolError(f"{where}: one push mixes coins: {row!r:.200}")
        raw_side = field(row, "side", where)
        side = _SIDES.get(raw_side) if isinstance(raw_side, str) else None
        if side not in TAKER_SIDES:
            raise ExchangeProtocolError(f"{where}: side must be B or A, got {raw_side!r:.40}")
        trades.append(
            Trade(
                time=parse_ms(field(row, "time", where), "time", where),
                trade_id=str(parse_int(field(row, "tid", where), "tid", where)),
                price=parse_decimal(field(row, "px", where), "px", where),
                size=parse_decimal(field(row, "sz", where), "sz", where),
                side=side,
            )
        )
    return TradesUpdate(coin, tuple(trades))


def _parse_ack(data: object, received_at: datetime) -> SubscriptionAck:
    where = "Hyperliquid WS subscriptionResponse"
    method = field(data, "method", where)
    subscription = field(data, "subscription", where)
    if not isinstance(method, str) or not isinstance(subscription, dict):
        raise ExchangeProtocolError(f"{where}: unexpected data {data!r:.200}")
    return SubscriptionAck(method, subscription)


def _parse_error(data: object, received_at: datetime) -> ChannelError:
    return ChannelError(data if isinstance(data, str) else json.dumps(data, default=str))


_CHANNELS: dict[str, Callable[[object, datetime], HyperliquidMessage]] = {
    "candle": _parse_candle_push,
    "activeAssetCtx": parse_asset_context,
    "trades": parse_trades,
    "subscriptionResponse": _parse_ack,
    "error": _parse_error,
}


# --- REST payloads ------------------------------------------------------------------------


def parse_candle_snapshot(payload: object, coin: str, interval: str) -> list[Candle]:
    """A `candleSnapshot` response: an ascending list of candle objects (see `parse_candle`),
    including the candles that contain startTime and endTime."""
    where = f"Hyperliquid candleSnapshot {coin} {interval}"
    if not isinstance(payload, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {payload!r:.200}")
    candles = []
    for row in payload:
        update = parse_candle(row, where)
        if (update.coin, update.interval) != (coin, interval):
            raise ExchangeProtocolError(f"{where}: got a candle of {update.coin} {update.interval}")
        candles.append(update.candle)
    return candles


def parse_funding_history(payload: object, coin: str) -> list[tuple[int, FundingRate]]:
    """A `fundingHistory` response, as (raw time in ms, minute-aligned row) pairs::

    [{"coin":"BTC","fundingRate":"-0.00061334","premium":"-0.00091334","time":1683849600048}]

    `time` carries milliseconds of jitter past the hour; the row's `time` is floored to the
    minute. The rates are the *settled* ones.
    """
    where = f"Hyperliquid fundingHistory {coin}"
    if not isinstance(payload, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {payload!r:.200}")
    rows = []
    for item in payload:
        if field(item, "coin", where) != coin:
            raise ExchangeProtocolError(f"{where}: got a row of {item['coin']!r}")
        ms = parse_int(field(item, "time", where), "time", where)
        row = FundingRate(
            time=floor_minute(parse_ms(ms, "time", where)),
            settled_funding_rate=parse_decimal(
                field(item, "fundingRate", where), "fundingRate", where
            ),
            settled_premium=parse_decimal(field(item, "premium", where), "premium", where),
        )
        rows.append((ms, row))
    return rows


# --- depth (order books: kirby_core.books) ------------------------------------------------


class _BookLevel(msgspec.Struct, gc=False):
    px: str
    sz: str


class _BookData(msgspec.Struct, gc=False):
    coin: str
    time: int
    levels: tuple[list[_BookLevel], list[_BookLevel]]


class _BookFrame(msgspec.Struct, gc=False):
    channel: Literal["l2Book"]
    data: _BookData


DEPTH_DECODER = msgspec.json.Decoder(_BookFrame)
"""The typed decoder of depth frames (`bench.books` times it alone: the engine's limit)."""


def parse_depth(raw: str | bytes, received_at: datetime) -> tuple[BookUpdate, ...]:
    """An `l2Book` push: the whole book every time (at most 20 levels a side), no sequence
    number (its `time` in ms stands in, for ordering)::

        {"channel":"l2Book","data":{"coin":"BTC","time":1736165581000,"levels":[
         [{"px":"97000.0","sz":"1.5","n":3}],[{"px":"97001.0","sz":"0.2","n":1}]]}}"""
    try:  # the fast path; anything unexpected goes the checked way, which names it
        data = DEPTH_DECODER.decode(raw).data
        (bid_rows, ask_rows), coin, ms = data.levels, data.coin, data.time
        sides = ordered_sides(bid_rows, ask_rows, "px", "sz")
        if sides is not None and coin and ms >= 0:
            bids, asks = sides
            return (BookUpdate(coin, True, bids, asks, ms, None, None, ms_to_datetime(ms)),)
    except msgspec.DecodeError:
        pass
    return _checked_depth(load_depth_frame(raw, "Hyperliquid WS l2Book"))


def _checked_depth(message: Any) -> tuple[BookUpdate, ...]:
    where = "Hyperliquid WS l2Book"
    if field(message, "channel", where) != "l2Book":
        raise ExchangeProtocolError(f"{where}: not an l2Book frame: {message!r:.200}")
    data = field(message, "data", where)
    coin = field(data, "coin", where)
    if not isinstance(coin, str) or not coin:
        raise ExchangeProtocolError(f"{where}: field 'coin' must be a string, got {coin!r:.80}")
    where = f"{where} {coin}"
    levels = field(data, "levels", where)
    if not isinstance(levels, list) or len(levels) != 2:
        raise ExchangeProtocolError(f"{where}: levels must be [bids, asks], got {levels!r:.200}")
    time_ms = parse_int(field(data, "time", where), "time", where)
    return (
        BookUpdate(
            symbol=coin,
            snapshot=True,
            bids=_book_side(levels[0], "bids", where),
            asks=_book_side(levels[1], "asks", where),
            sequence=time_ms,
            previous=None,
            first=None,
            time=parse_ms(time_ms, "time", where),
        ),
    )


def _book_side(rows: object, name: str, where: str) -> tuple[Level, ...]:
    if not isinstance(rows, list):
        raise ExchangeProtocolError(f"{where}: {name} must be a list, got {rows!r:.200}")
    pairs = [[field(row, "px", where), field(row, "sz", where)] for row in rows]
    levels = parse_levels(pairs, name, where)
    # sent best first; a side out of order is refused (a book is never sorted silently)
    for (price, _), (next_price, _) in pairwise(levels):
        if (next_price >= price) if name == "bids" else (next_price <= price):
            order = "descending" if name == "bids" else "ascending"
            raise ExchangeProtocolError(
                f"{where}: {name} must be strictly {order} (best first), got {price} "
                f"then {next_price}"
            )
    return levels


DEPTH = DepthChannel(
    subscription=lambda market_type, coin: {"type": "l2Book", "coin": coin},
    parse=parse_depth,
    sequenced=False,
)
"""The book collector's `l2Book` channel: every push a whole book, no sequence."""
