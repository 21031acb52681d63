"""Bybit's v5 public WebSocket (spot and linear perps): subscriptions, frames, parser.

    {"op":"subscribe","req_id":"1","args":["kline.1.BTCUSDT","tickers.BTCUSDT"]}
      -> {"success":true,"ret_msg":"","conn_id":"...","req_id":"1","op":"subscribe"}
    {"op":"ping"} -> {"success":true,"ret_msg":"pong","conn_id":"...","op":"ping"}

Topics: `kline.<code>.<symbol>` (candles; "confirm" true on the final push),
`tickers.<symbol>` (linear: funding rate, mark and index price, open interest: a snapshot,
then deltas carrying only the fields that changed; `BybitParser` merges them into the full
state of each symbol and yields it whole) and `publicTrade.<symbol>`.

Rules: the client pings every 20 s (the server drops a silent connection; ccxt gives up
after ~36 s without a pong); spot takes at most 10 args a subscribe and the args of one
request may not exceed 21,000 characters (Kirby keeps both rules on linear too); 500 new
connections per 5 minutes per IP.

Depth (`parse_depth`: `orderbook.50.<symbol>` frames) parses into
`kirby_core.books.BookUpdate`s for the book rules there; no feed subscribes to depth yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from kirby_core.books.book import BookUpdate, load_depth_frame, parse_levels, text_rows
from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges.base import check_candle, field, parse_decimal, parse_int, parse_ms
from kirby_core.exchanges.bybit import WIRE_INTERVALS as INTERVALS  # one home: the REST module
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
    chunks,
    compact,
    items,
    load_frame,
    text,
)
from kirby_core.models import AssetContextUpdate, Candle, CandleUpdate, FundingRate, OpenInterest
from kirby_core.timeutil import floor_minute, ms_to_datetime

_BY_CODE = {code: interval for interval, code in INTERVALS.items()}

STREAMED_DATASETS = {
    "spot": ("candles", "trades"),
    "perps": ("candles", "funding_rates", "open_interest", "trades"),
}
POLLED_DATASETS: dict[str, tuple[str, ...]] = {}
_CATEGORY = {"spot": "spot", "perps": "linear"}
_HOST = "wss://stream.bybit.com"

_PING = compact({"op": "ping"})
KEEP_ALIVE = KeepAlive(ping_frame=_PING, ping_seconds=20, idle_close_seconds=None)
LIMITS = {
    market_type: ConnectionLimits(
        streams_per_connection=None,
        args_per_subscribe=10,
        subscribe_chars=21_000,
        messages_per_second=None,
        subscribes_per_hour=None,
        max_connection_seconds=None,
        new_connections=(500, 300.0),
    )
    for market_type in _CATEGORY
}


def url(market_type: str, dataset: str) -> str:
    return f"{_HOST}/v5/public/{_CATEGORY[market_type]}"


def subscription(market_type: str, dataset: str, symbol: str, interval: str | None = None) -> str:
    """The topic of one series; funding and open interest share `tickers.<symbol>`."""
    if dataset not in STREAMED_DATASETS.get(market_type, ()):
        raise InvalidRequest(
            f"Bybit {market_type} streams no {dataset!r}; streamed: "
            f"{', '.join(STREAMED_DATASETS.get(market_type, ()))}"
        )
    if dataset == "candles":
        code = INTERVALS.get(interval or "")
        if code is None:
            raise InvalidRequest(
                f"Bybit has no {interval!r} candles; allowed: {', '.join(INTERVALS)}"
            )
        return f"kline.{code}.{symbol}"
    return f"publicTrade.{symbol}" if dataset == "trades" else f"tickers.{symbol}"


def subscribe_frames(market_type: str, topics: Sequence[str], request_id: int) -> list[str]:
    return _frames("subscribe", market_type, topics, request_id)


def unsubscribe_frames(market_type: str, topics: Sequence[str], request_id: int) -> list[str]:
    return _frames("unsubscribe", market_type, topics, request_id)


def _frames(op: str, market_type: str, topics: Sequence[str], request_id: int) -> list[str]:
    return [
        compact({"op": op, "req_id": str(request_id + n), "args": batch})
        for n, batch in enumerate(chunks(dict.fromkeys(topics), LIMITS[market_type]))
    ]


class BybitParser:
    """One connection's parser: it keeps each symbol's merged tickers state."""

    def __init__(self) -> None:
        self.tickers: dict[str, dict[str, Any]] = {}

    def __call__(self, raw: str | bytes, received_at: datetime) -> tuple[WsMessage, ...]:
        where = "Bybit WS"
        message = load_frame(raw, where)
        if not isinstance(message, dict):
            raise ExchangeProtocolError(f"{where}: expected an object, got {message!r:.200}")
        if "op" in message:
            return (_reply(message),)
        topic = text(field(message, "topic", where), "topic", where)
        kind, _, rest = topic.partition(".")
        data = field(message, "data", f"{where} {topic}")
        if kind == "kline":
            code, _, symbol = rest.partition(".")
            interval = _BY_CODE.get(code)
            if interval is None or not symbol:
                raise ExchangeProtocolError(f"{where}: unknown kline topic {topic!r}")
            return tuple(_candle(row, symbol, interval) for row in items(data, topic))
        if kind == "publicTrade":
            return (_trades(rest, items(data, topic)),)
        if kind == "tickers":
            return self._ticker(rest, message, data, received_at)
        raise ExchangeProtocolError(
            f"{where}: unknown topic {topic!r}; expected kline.*, tickers.*, publicTrade.*"
        )

    def _ticker(
        self, symbol: str, message: dict[str, Any], data: object, received_at: datetime
    ) -> tuple[WsMessage, ...]:
        """{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1736165581000,"cs":...,"data":{
        "symbol":"BTCUSDT","lastPrice":"97001.1","markPrice":"97005.2","indexPrice":"97001.5",
        "openInterest":"51234.123","openInterestValue":"4969999999.99","fundingRate":"0.0001",
        "nextFundingTime":"1736179200000","volume24h":"1234.5","turnover24h":"119750000.1",...}}
        then {"type":"delta","data":{"symbol":"BTCUSDT","markPrice":"97006.0"}}"""
        where = f"Bybit WS tickers {symbol}"
        kind = field(message, "type", where)
        if not isinstance(data, dict):
            raise ExchangeProtocolError(f"{where}: data must be an object, got {data!r:.200}")
        if kind == "snapshot":
            state = self.tickers[symbol] = dict(data)
        elif kind == "delta":
            if symbol not in self.tickers:
                raise ExchangeProtocolError(f"{where}: a delta before any snapshot")
            state = self.tickers[symbol]
            state.update(data)
        else:
            raise ExchangeProtocolError(f"{where}: type must be snapshot or delta, got {kind!r}")
        if "fundingRate" not in state:  # spot tickers carry no funding or open interest
            return ()
        minute = floor_minute(parse_ms(field(message, "ts", where), "ts", where))

        def number(name: str) -> Decimal:
            return parse_decimal(field(state, name, where), name, where)

        next_funding = int(number("nextFundingTime"))  # a string of epoch ms
        funding = FundingRate(
            time=minute,
            predicted_funding_rate=number("fundingRate"),
            mark_price=number("markPrice"),
            oracle_price=number("indexPrice"),
            next_funding_time=parse_ms(next_funding, "nextFundingTime", where),
        )
        interest = OpenInterest(
            time=minute,
            open_interest=number("openInterest"),
            notional=number("openInterestValue"),
            day_base_volume=number("volume24h"),
            day_notional_volume=number("turnover24h"),
        )
        if number("openInterest") < 0:
            raise ExchangeProtocolError(f"{where}: negative openInterest {state['openInterest']}")
        return (AssetContextUpdate(symbol, received_at, funding, interest),)


def _reply(message: dict[str, Any]) -> WsMessage:
    """An answer to a request: `{"success":true,"ret_msg":"pong","op":"ping",...}` (some
    endpoints answer a ping `{"op":"pong","args":["1736165581000"],...}` instead)."""
    op = message.get("op")
    if op == "pong":
        return Pong()
    if message.get("success") is not True:
        return ChannelError(f"Bybit {op}: {message.get('ret_msg')!s:.300}")
    if op == "ping" or message.get("ret_msg") == "pong":
        return Pong()
    return SubscriptionAck(str(op), message.get("req_id"))


def _candle(row: object, symbol: str, interval: str) -> CandleUpdate:
    """{"start":1736165520000,"end":1736165579999,"interval":"1","open":"97001.1",
    "close":"97010","high":"97020","low":"97000","volume":"12.345","turnover":"1197601.2",
    "confirm":true,"timestamp":1736165580012}"""
    where = f"Bybit WS kline {symbol} {interval}"
    closed = field(row, "confirm", where)
    if not isinstance(closed, bool):
        raise ExchangeProtocolError(f"{where}: 'confirm' must be a boolean, got {closed!r:.80}")
    candle = Candle(
        time=parse_ms(field(row, "start", where), "start", where),
        open=parse_decimal(field(row, "open", where), "open", where),
        high=parse_decimal(field(row, "high", where), "high", where),
        low=parse_decimal(field(row, "low", where), "low", where),
        close=parse_decimal(field(row, "close", where), "close", where),
        volume=parse_decimal(field(row, "volume", where), "volume", where),
    )
    return CandleUpdate(symbol, interval, check_candle(candle, where), closed)


def _trades(symbol: str, rows: list[Any]) -> TradesUpdate:
    """[{"T":1736165580998,"s":"BTCUSDT","S":"Buy","v":"0.010","p":"97001.10",
    "L":"ZeroPlusTick","i":"12345","BT":false,"seq":12345}]"""
    where = f"Bybit WS publicTrade {symbol}"
    trades = []
    for row in rows:
        side = str(field(row, "S", where)).lower()
        if side not in TAKER_SIDES:
            raise ExchangeProtocolError(f"{where}: 'S' must be Buy or Sell, got {row['S']!r}")
        trades.append(
            Trade(
                time=parse_ms(field(row, "T", where), "T", where),
                trade_id=text(field(row, "i", where), "i", where),
                price=parse_decimal(field(row, "p", where), "p", where),
                size=parse_decimal(field(row, "v", where), "v", where),
                side=side,
            )
        )
    return TradesUpdate(symbol, tuple(trades))


# --- depth (order books: kirby_core.books) ------------------------------------------------


class _BookData(msgspec.Struct, gc=False):
    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: int


class _BookFrame(msgspec.Struct, gc=False):
    topic: str
    type: Literal["snapshot", "delta"]
    ts: int
    data: _BookData


DEPTH_DECODER = msgspec.json.Decoder(_BookFrame)
"""The typed decoder of depth frames (`bench.books` times it alone: the engine's limit)."""


def parse_depth(raw: str | bytes, received_at: datetime) -> tuple[BookUpdate, ...]:
    """An `orderbook.{depth}.{symbol}` push (Kirby reads depth 50: spot and linear both
    push it every 20 ms)::

        {"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1736165581000,
         "data":{"s":"BTCUSDT","b":[["97000.10","0.5"]],"a":[["97001.00","1.2"]],
         "u":18521288,"seq":7961638724},"cts":1736165580998}

    then `"type":"delta"` pushes whose sizes are absolute ("0" deletes the level)."""
    try:  # the fast path; anything unexpected goes the checked way, which names it
        frame = DEPTH_DECODER.decode(raw)
        data, ms = frame.data, frame.ts
        sides = text_rows(data.b, data.a)
        if sides is not None and frame.topic.startswith("orderbook.") and data.s and ms >= 0:
            bids, asks = sides
            snapshot = frame.type == "snapshot"
            return (
                BookUpdate(data.s, snapshot, bids, asks, data.u, None, None, ms_to_datetime(ms)),
            )
    except msgspec.DecodeError:
        pass
    return _checked_depth(load_depth_frame(raw, "Bybit WS orderbook"))


def _checked_depth(message: Any) -> tuple[BookUpdate, ...]:
    where = "Bybit WS orderbook"
    topic = text(field(message, "topic", where), "topic", where)
    if not topic.startswith("orderbook."):
        raise ExchangeProtocolError(f"{where}: not an orderbook topic: {topic!r:.80}")
    kind = field(message, "type", where)
    if kind not in ("snapshot", "delta"):
        raise ExchangeProtocolError(f"{where}: type must be snapshot or delta, got {kind!r:.40}")
    data = field(message, "data", where)
    symbol = text(field(data, "s", where), "s", where)
    where = f"{where} {symbol}"
    return (
        BookUpdate(
            symbol=symbol,
            snapshot=kind == "snapshot",
            bids=parse_levels(field(data, "b", where), "b", where),
            asks=parse_levels(field(data, "a", where), "a", where),
            sequence=parse_int(field(data, "u", where), "u", where),
            previous=None,
            first=None,
            time=parse_ms(field(message, "ts", where), "ts", where),
        ),
    )


DEPTH = DepthChannel(
    subscription=lambda market_type, symbol: f"orderbook.50.{symbol}",
    parse=parse_depth,
)
"""The book collector's `orderbook.50` channel: a snapshot, then deltas chained by `u`."""
