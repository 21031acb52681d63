"""Binance's market streams (spot and USD-M perps): subscriptions, frames, parser.

    {"method":"SUBSCRIBE","params":["btcusdt@kline_1m","btcusdt@markPrice@1s"],"id":1}
      -> {"result":null,"id":1}

Kirby uses the combined-stream URLs, where every event comes wrapped as
`{"stream":"btcusdt@kline_1m","data":{...}}` (a bare event parses too). Streams:
`<symbol>@kline_<interval>` (candles; "x" true on the final push), `<symbol>@markPrice@1s`
(perps: funding rate "r", mark "p", index "i", next funding time "T") and `<symbol>@trade`.
Open interest is not on Binance's WebSocket: `POLLED_DATASETS` says the collector polls REST
`/fapi/v1/openInterest` once a minute. USD-M futures moved in 2026 to split URLs: kline and
markPrice on `/market`, trade on `/public`.

Rules: the server pings (every 20 s spot, 3 min futures) and the client's library answers;
at most 1024 streams a connection, 5 (spot) / 10 (futures) client messages a second, 300
new connections per 5 minutes per IP, and every connection ends after 24 h.

Depth (`parse_depth`: `<symbol>@depth@100ms` diffs; `parse_depth_snapshot`: the REST depth
snapshot) parses into `kirby_core.books.BookUpdate`s for the book rules there; no feed
subscribes to depth yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from kirby_core.books.book import BookUpdate, load_depth_frame, parse_levels, text_rows
from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges import binance as binance_rest
from kirby_core.exchanges.base import check_candle, field, parse_decimal, parse_int, parse_ms
from kirby_core.exchanges.binance import INTERVALS
from kirby_core.exchanges.feeds import (
    DAY_SECONDS,
    ChannelError,
    ConnectionLimits,
    DepthChannel,
    FundingUpdate,
    KeepAlive,
    SubscriptionAck,
    Trade,
    TradesUpdate,
    WsMessage,
    chunks,
    compact,
    load_frame,
    text,
)
from kirby_core.models import Candle, CandleUpdate, FundingRate
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute, ms_to_datetime

STREAMED_DATASETS = {
    "spot": ("candles", "trades"),
    "perps": ("candles", "funding_rates", "trades"),
}
POLLED_DATASETS = {"perps": ("open_interest",)}
"""Carried by REST polling, not the WebSocket: Binance streams no open interest."""

_HOSTS = {"spot": "wss://stream.binance.com:9443", "perps": "wss://fstream.binance.com"}
_PUBLIC_FUTURES = ("trades",)

KEEP_ALIVE = KeepAlive(ping_frame=None, ping_seconds=None, idle_close_seconds=None,
                       server_pings=True)  # fmt: skip
LIMITS = {
    market_type: ConnectionLimits(
        streams_per_connection=1024,
        args_per_subscribe=1024,
        subscribe_chars=None,
        messages_per_second=per_second,
        subscribes_per_hour=None,
        max_connection_seconds=DAY_SECONDS,
        new_connections=(300, 300.0),
    )
    for market_type, per_second in (("spot", 5), ("perps", 10))
}


def url(market_type: str, dataset: str) -> str:
    """The combined-stream URL carrying `dataset` of `market_type`."""
    if market_type == "spot":
        return f"{_HOSTS['spot']}/stream"
    category = "public" if dataset in _PUBLIC_FUTURES else "market"
    return f"{_HOSTS['perps']}/{category}/stream"


def subscription(market_type: str, dataset: str, symbol: str, interval: str | None = None) -> str:
    """The stream name of one series: `btcusdt@kline_1m`, `btcusdt@markPrice@1s`..."""
    if dataset not in STREAMED_DATASETS.get(market_type, ()):
        raise InvalidRequest(
            f"Binance {market_type} streams no {dataset!r}; streamed: "
            f"{', '.join(STREAMED_DATASETS.get(market_type, ()))}"
        )
    name = symbol.lower()
    if dataset == "candles":
        if interval not in INTERVALS:
            raise InvalidRequest(
                f"Binance has no {interval!r} candles; allowed: {', '.join(INTERVALS)}"
            )
        return f"{name}@kline_{interval}"
    return f"{name}@markPrice@1s" if dataset == "funding_rates" else f"{name}@trade"


def subscribe_frames(market_type: str, streams: Sequence[str], request_id: int) -> list[str]:
    return _frames("SUBSCRIBE", market_type, streams, request_id)


def unsubscribe_frames(market_type: str, streams: Sequence[str], request_id: int) -> list[str]:
    return _frames("UNSUBSCRIBE", market_type, streams, request_id)


def _frames(method: str, market_type: str, streams: Sequence[str], request_id: int) -> list[str]:
    return [
        compact({"method": method, "params": batch, "id": request_id + n})
        for n, batch in enumerate(chunks(streams, LIMITS[market_type]))
    ]


def parse_frame(raw: str | bytes, received_at: datetime) -> tuple[WsMessage, ...]:
    where = "Binance WS"
    message = load_frame(raw, where)
    if not isinstance(message, dict):
        raise ExchangeProtocolError(f"{where}: expected an object, got {message!r:.200}")
    if "result" in message and "id" in message:
        return (SubscriptionAck("subscribe", message["id"]),)
    if "error" in message:
        error = message["error"]
        code = error.get("code") if isinstance(error, dict) else None
        msg = error.get("msg") if isinstance(error, dict) else error
        return (ChannelError(f"Binance error {code}: {msg} (request {message.get('id')})"),)
    event = message["data"] if "stream" in message and "data" in message else message
    kind = field(event, "e", where)
    parser = _EVENTS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ExchangeProtocolError(
            f"{where}: unknown event {kind!r}; expected one of {', '.join(_EVENTS)}"
        )
    return parser(event)


def _kline(event: dict[str, Any]) -> tuple[WsMessage, ...]:
    """{"e":"kline","E":1736165580000,"s":"BTCUSDT","k":{"t":1736165520000,"T":1736165579999,
    "s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"97001.10","c":"97010.00","h":"97020.00",
    "l":"97000.00","v":"12.345","n":101,"x":true,"q":"1197601.23","V":"6.1","Q":"591760.1",
    "B":"0"}}"""
    where = "Binance WS kline"
    k = field(event, "k", where)
    symbol = text(field(k, "s", where), "s", where)
    interval = text(field(k, "i", where), "i", where)
    closed = field(k, "x", where)
    if not isinstance(closed, bool):
        raise ExchangeProtocolError(f"{where}: field 'x' must be a boolean, got {closed!r:.80}")
    candle = Candle(
        time=parse_ms(field(k, "t", where), "t", where),
        open=parse_decimal(field(k, "o", where), "o", where),
        high=parse_decimal(field(k, "h", where), "h", where),
        low=parse_decimal(field(k, "l", where), "l", where),
        close=parse_decimal(field(k, "c", where), "c", where),
        volume=parse_decimal(field(k, "v", where), "v", where),
        trade_count=parse_int(field(k, "n", where), "n", where),
    )
    where = f"{where} {symbol} {interval}"
    return (CandleUpdate(symbol, interval, check_candle(candle, where), closed),)


def _mark_price(event: dict[str, Any]) -> tuple[WsMessage, ...]:
    """{"e":"markPriceUpdate","E":1736165581000,"s":"BTCUSDT","p":"97005.12345678",
    "ap":"97005.12345678","P":"97004.9","i":"97001.5","r":"0.00010000","T":1736179200000}"""
    where = "Binance WS markPriceUpdate"
    symbol = text(field(event, "s", where), "s", where)
    where = f"{where} {symbol}"
    funding = FundingRate(
        time=floor_minute(parse_ms(field(event, "E", where), "E", where)),
        predicted_funding_rate=parse_decimal(field(event, "r", where), "r", where),
        mark_price=parse_decimal(field(event, "p", where), "p", where),
        oracle_price=parse_decimal(field(event, "i", where), "i", where),
        next_funding_time=parse_ms(field(event, "T", where), "T", where),
    )
    return (FundingUpdate(symbol, funding),)


def _trade(event: dict[str, Any]) -> tuple[WsMessage, ...]:
    """{"e":"trade","E":1736165581000,"s":"BTCUSDT","t":12345,"p":"97001.10","q":"0.010",
    "T":1736165580998,"m":true}   ("m": the buyer is the maker, so the taker sold)"""
    where = "Binance WS trade"
    symbol = text(field(event, "s", where), "s", where)
    maker_buys = field(event, "m", where)
    if not isinstance(maker_buys, bool):
        raise ExchangeProtocolError(f"{where}: field 'm' must be a boolean, got {maker_buys!r}")
    trade = Trade(
        time=parse_ms(field(event, "T", where), "T", where),
        trade_id=str(parse_int(field(event, "t", where), "t", where)),
        price=parse_decimal(field(event, "p", where), "p", where),
        size=parse_decimal(field(event, "q", where), "q", where),
        side="sell" if maker_buys else "buy",
    )
    return (TradesUpdate(symbol, (trade,)),)


_EVENTS = {"kline": _kline, "markPriceUpdate": _mark_price, "trade": _trade}


# --- depth (order books: kirby_core.books) ------------------------------------------------


class _DepthEvent(msgspec.Struct, gc=False):
    e: Literal["depthUpdate"]
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    pu: int | None = None


class _DepthStream(msgspec.Struct, gc=False):
    data: _DepthEvent


DEPTH_DECODER = msgspec.json.Decoder(_DepthStream)
"""The typed decoder of depth frames (`bench.books` times it alone: the engine's limit)."""
_DEPTH_EVENT = msgspec.json.Decoder(_DepthEvent)


def parse_depth(raw: str | bytes, received_at: datetime) -> tuple[BookUpdate, ...]:
    """A `<symbol>@depth@100ms` diff, bare or in its combined-stream wrapper::

        {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1736165581000,
         "s":"BTCUSDT","U":157,"u":160,"b":[["97000.10","0.5"]],"a":[["97001.00","0"]]}}

    USD-M futures add `"T"` (transaction time) and `"pu"` (the previous event's `u`).
    Sizes are absolute; "0" deletes the level."""
    try:  # the fast path; anything unexpected goes the checked way, which names it
        try:
            event = DEPTH_DECODER.decode(raw).data
        except msgspec.ValidationError:
            event = _DEPTH_EVENT.decode(raw)
        sides, symbol, ms = text_rows(event.b, event.a), event.s, event.E
        if sides is not None and symbol and ms >= 0:
            bids, asks = sides
            update = BookUpdate(
                symbol, False, bids, asks, event.u, event.pu, event.U, ms_to_datetime(ms)
            )
            return (update,)
    except msgspec.DecodeError:
        pass
    return _checked_depth(load_depth_frame(raw, "Binance WS depthUpdate"))


def _checked_depth(message: Any) -> tuple[BookUpdate, ...]:
    where = "Binance WS depthUpdate"
    event = message.get("data", message) if isinstance(message, dict) else message
    if field(event, "e", where) != "depthUpdate":
        raise ExchangeProtocolError(f"{where}: not a depthUpdate: {event!r:.200}")
    symbol = text(field(event, "s", where), "s", where)
    where = f"{where} {symbol}"
    previous = event.get("pu")
    return (
        BookUpdate(
            symbol=symbol,
            snapshot=False,
            bids=parse_levels(field(event, "b", where), "b", where),
            asks=parse_levels(field(event, "a", where), "a", where),
            sequence=parse_int(field(event, "u", where), "u", where),
            previous=None if previous is None else parse_int(previous, "pu", where),
            first=parse_int(field(event, "U", where), "U", where),
            time=parse_ms(field(event, "E", where), "E", where),
        ),
    )


def parse_depth_snapshot(payload: object, symbol: str, received_at: datetime) -> BookUpdate:
    """REST `GET /api/v3/depth` (spot) or `/fapi/v1/depth` (futures, adds "E" and "T")::

        {"lastUpdateId":160,"bids":[["97000.10","0.5"]],"asks":[["97001.00","1.2"]]}

    Stamped with the exchange's "E" where it sends one, else `received_at`."""
    where = f"Binance REST depth {symbol}"
    event_ms = payload.get("E") if isinstance(payload, dict) else None
    return BookUpdate(
        symbol=symbol,
        snapshot=True,
        bids=parse_levels(field(payload, "bids", where), "bids", where),
        asks=parse_levels(field(payload, "asks", where), "asks", where),
        sequence=parse_int(field(payload, "lastUpdateId", where), "lastUpdateId", where),
        previous=None,
        first=None,
        time=received_at if event_ms is None else parse_ms(event_ms, "E", where),
    )


DEPTH_SNAPSHOT_LIMIT = 1000
"""Levels a REST depth snapshot asks for (its weight: `binance.depth_weight`)."""


def depth_snapshot_url(settings: Settings, market_type: str, symbol: str) -> str:
    """The REST depth snapshot a book (re)syncs from."""
    if market_type == "spot":
        base, path = settings.binance_spot_url, "/api/v3/depth"
    else:
        base, path = settings.binance_futures_url, "/fapi/v1/depth"
    return f"{base.rstrip('/')}{path}?symbol={symbol}&limit={DEPTH_SNAPSHOT_LIMIT}"


DEPTH = DepthChannel(
    # `@depth`: diffs every 1000 ms (spot) / 250 ms (USD-M); sampled once a second, the book
    # needs no finer steps, and the frames are a tenth of `@depth@100ms`'s
    subscription=lambda market_type, symbol: f"{symbol.lower()}@depth",
    parse=parse_depth,
    snapshot_url=depth_snapshot_url,
    parse_snapshot=parse_depth_snapshot,
    # the REST budget shared with backfills and polls, and the weight of `limit` levels
    snapshot_spend=lambda settings, market_type, clock: binance_rest.depth_snapshot_spend(
        settings, market_type, DEPTH_SNAPSHOT_LIMIT, clock
    ),
)
"""The book collector's diff stream, synced from the REST snapshot (U/u spot, pu USD-M)."""
