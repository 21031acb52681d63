"""OKX's v5 public WebSocket (spot and swaps): subscriptions, frames, parser.

    {"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"}]}
      -> {"event":"subscribe","arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},
          "connId":"a4d3ae55"}
    ping (text) -> pong (text)

Candles (`candle<bar>`, confirm "1" on the final push) are served on `/ws/v5/business`;
`funding-rate`, `mark-price`, `index-tickers`, `open-interest` and `trades` on
`/ws/v5/public`. A swap's funding row merges three channels (`companions`): `funding-rate`
(pushed every 30-90 s, no prices), `mark-price` (on every change of the mark, at most every
200 ms, and every 10 s without one) and `index-tickers` of the swap's index (`BTC-USDT` for
`BTC-USDT-SWAP`: every 100 ms with a change, once a minute without); `OkxParser` keeps their
latest per swap and connection and yields the merged state on every push, stamped with that
push's minute. Data pushes are
`{"arg":{"channel","instId"},"data":[...]}`; errors `{"event":"error","code","msg"}`;
`{"event":"notice","code":"64008"}` announces a disconnect for a service upgrade.

Candle volume is the base coin's: a swap's `vol` counts contracts, so its candles take
`volCcy`. Swap trades (`sz`) count contracts too and the wire carries no coin size: their
`TradesUpdate` says `contracts`, and the caller multiplies by the contract value
(`ctVal` x `ctMult` of REST `public/instruments`, `parse_contract_values`).

Rules: the client sends text `ping` when it has sent nothing for 25 s (OKX drops a
connection after 30 s without data); at most 480 subscribe/unsubscribe requests an hour a
connection; the args of one request may not exceed 64 KB; 3 new connections a second per IP.

Depth (`parse_depth`: `books` frames) parses into `kirby_core.books.BookUpdate`s for the
book rules there; no feed subscribes to depth yet.
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
from kirby_core.exchanges.feeds import (
    TAKER_SIDES,
    ChannelError,
    ConnectionLimits,
    ContractValueSource,
    DepthChannel,
    FundingUpdate,
    KeepAlive,
    OpenInterestUpdate,
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
from kirby_core.exchanges.okx import WIRE_INTERVALS as INTERVALS  # one home: the REST module
from kirby_core.models import Candle, CandleUpdate, FundingRate, OpenInterest
from kirby_core.timeutil import floor_minute, ms_to_datetime

_BY_BAR = {bar: interval for interval, bar in INTERVALS.items()}

STREAMED_DATASETS = {
    "spot": ("candles", "trades"),
    "perps": ("candles", "funding_rates", "open_interest", "trades"),
}
POLLED_DATASETS: dict[str, tuple[str, ...]] = {}
_CHANNELS = {"funding_rates": "funding-rate", "open_interest": "open-interest", "trades": "trades"}
_SWAP = "-SWAP"
"""A USDT swap's instId is its index's (its underlying's) plus this."""
_HOST = "wss://ws.okx.com:8443"

_PING = "ping"
KEEP_ALIVE = KeepAlive(ping_frame=_PING, ping_seconds=25, idle_close_seconds=30)
LIMITS = {
    market_type: ConnectionLimits(
        streams_per_connection=None,
        args_per_subscribe=None,
        subscribe_chars=64 * 1024,
        messages_per_second=None,
        subscribes_per_hour=480,
        max_connection_seconds=None,
        new_connections=(3, 1.0),
    )
    for market_type in STREAMED_DATASETS
}


def url(market_type: str, dataset: str) -> str:
    return f"{_HOST}/ws/v5/{'business' if dataset == 'candles' else 'public'}"


def subscription(
    market_type: str, dataset: str, symbol: str, interval: str | None = None
) -> dict[str, str]:
    """One channel arg: {"channel":"candle1m","instId":"BTC-USDT-SWAP"}."""
    if dataset not in STREAMED_DATASETS.get(market_type, ()):
        raise InvalidRequest(
            f"OKX {market_type} streams no {dataset!r}; streamed: "
            f"{', '.join(STREAMED_DATASETS.get(market_type, ()))}"
        )
    if dataset == "candles":
        bar = INTERVALS.get(interval or "")
        if bar is None:
            allowed = ", ".join(INTERVALS)
            raise InvalidRequest(f"OKX has no {interval!r} candles; allowed: {allowed}")
        return {"channel": f"candle{bar}", "instId": symbol}
    return {"channel": _CHANNELS[dataset], "instId": symbol}


def companions(market_type: str, dataset: str, symbol: str) -> tuple[dict[str, str], ...]:
    """The further channel args a series needs beside its own `subscription`: a swap's
    funding row takes its mark price from {"channel":"mark-price","instId":"BTC-USDT-SWAP"}
    and its index from {"channel":"index-tickers","instId":"BTC-USDT"}."""
    if (market_type, dataset) != ("perps", "funding_rates"):
        return ()
    return (
        {"channel": "mark-price", "instId": symbol},
        {"channel": "index-tickers", "instId": symbol.removesuffix(_SWAP)},
    )


def subscribe_frames(
    market_type: str, args: Sequence[dict[str, str]], request_id: int
) -> list[str]:
    return _frames("subscribe", market_type, args)


def unsubscribe_frames(
    market_type: str, args: Sequence[dict[str, str]], request_id: int
) -> list[str]:
    return _frames("unsubscribe", market_type, args)


def _frames(op: str, market_type: str, args: Sequence[dict[str, str]]) -> list[str]:
    return [compact({"op": op, "args": batch}) for batch in chunks(args, LIMITS[market_type])]


class OkxParser:
    """One connection's parser: it keeps each swap's funding state merged from its
    `funding-rate`, `mark-price` and `index-tickers` pushes, so that any of them yields the
    pair's whole state (OKX sends them apart: funding every 30-90 s, the prices on every
    change)."""

    def __init__(self) -> None:
        self.state: dict[str, FundingRate] = {}
        """Swap instId -> its merged funding state."""

    def __call__(self, raw: str | bytes, received_at: datetime) -> tuple[WsMessage, ...]:
        if raw in ("pong", b"pong"):
            return (Pong(),)
        where = "OKX WS"
        message = load_frame(raw, where)
        if not isinstance(message, dict):
            raise ExchangeProtocolError(f"{where}: expected an object, got {message!r:.200}")
        event = message.get("event")
        if event in ("subscribe", "unsubscribe"):
            return (SubscriptionAck(event, message.get("arg")),)
        if event == "channel-conn-count":  # how many connections share a channel: information
            return ()
        if event is not None:  # error, notice (64008: reconnect soon)
            return (
                ChannelError(f"OKX {event} {message.get('code')}: {message.get('msg')!s:.300}"),
            )
        arg = field(message, "arg", where)
        channel = text(field(arg, "channel", where), "channel", where)
        symbol = text(field(arg, "instId", where), "instId", where)
        rows = items(field(message, "data", f"{where} {channel} {symbol}"), f"{where} {channel}")
        if channel.startswith("candle"):
            interval = _BY_BAR.get(channel.removeprefix("candle"))
            if interval is None:
                raise ExchangeProtocolError(f"{where}: unknown candle channel {channel!r}")
            return tuple(_candle(row, symbol, interval) for row in rows)
        if channel == "funding-rate":
            return tuple(self._funding(symbol, _funding(row, symbol)) for row in rows)
        if channel == "mark-price":
            return tuple(
                self._merge(symbol, minute, mark_price=price)
                for minute, price in (_price(row, symbol, channel, "markPx") for row in rows)
            )
        if channel == "index-tickers":
            swap = symbol + _SWAP
            return tuple(
                self._merge(swap, minute, oracle_price=price)
                for minute, price in (_price(row, symbol, channel, "idxPx") for row in rows)
            )
        if channel == "open-interest":
            return tuple(OpenInterestUpdate(symbol, _open_interest(row, symbol)) for row in rows)
        if channel == "trades":
            trades = tuple(_trade(row, symbol) for row in rows)
            return (TradesUpdate(symbol, trades, contracts=symbol.endswith("-SWAP")),)
        raise ExchangeProtocolError(
            f"{where}: unknown channel {channel!r}; expected candle*, funding-rate, "
            "mark-price, index-tickers, open-interest, trades"
        )

    def _funding(self, symbol: str, funding: FundingRate) -> FundingUpdate:
        """A funding-rate push, with the latest prices seen (None before the first)."""
        return self._merge(
            symbol,
            funding.time,
            predicted_funding_rate=funding.predicted_funding_rate,
            premium=funding.premium,
            next_funding_time=funding.next_funding_time,
        )

    def _merge(self, symbol: str, minute: datetime, **fields: Any) -> FundingUpdate:
        """The swap's state with one push's `fields`, stamped with its minute (as Bybit's
        tickers deltas carry what did not change); fields no push brought yet are None."""
        state = self.state.get(symbol) or FundingRate(minute)
        state = self.state[symbol] = state._replace(time=minute, **fields)
        return FundingUpdate(symbol, state)


def _ms(value: object, name: str, where: str) -> datetime:
    """OKX sends epoch milliseconds as strings."""
    ms = text(value, name, where)
    if not ms.isdigit():
        raise ExchangeProtocolError(f"{where}: field {name!r} is not epoch ms: {ms!r:.80}")
    return parse_ms(int(ms), name, where)


def _candle(row: object, symbol: str, interval: str) -> CandleUpdate:
    """["1736165520000","97001.1","97020","97000","97010","1234","12.34","1197601.2","1"]:
    ts, o, h, l, c, vol (contracts on a swap, base on spot), volCcy (base on a swap),
    volCcyQuote, confirm."""
    where = f"OKX WS candle {symbol} {interval}"
    if not isinstance(row, list) or len(row) < 9:
        raise ExchangeProtocolError(f"{where}: expected a row of 9 strings, got {row!r:.200}")
    confirm = row[8]
    if confirm not in ("0", "1"):
        raise ExchangeProtocolError(f"{where}: confirm must be '0' or '1', got {confirm!r:.80}")
    volume = row[6] if symbol.endswith("-SWAP") else row[5]
    candle = Candle(
        time=_ms(row[0], "ts", where),
        open=parse_decimal(row[1], "o", where),
        high=parse_decimal(row[2], "h", where),
        low=parse_decimal(row[3], "l", where),
        close=parse_decimal(row[4], "c", where),
        volume=parse_decimal(volume, "volCcy" if symbol.endswith("-SWAP") else "vol", where),
    )
    return CandleUpdate(symbol, interval, check_candle(candle, where), confirm == "1")


def _funding(row: object, symbol: str) -> FundingRate:
    """{"instType":"SWAP","instId":"BTC-USDT-SWAP","fundingRate":"0.0001",
    "fundingTime":"1736179200000","nextFundingTime":"1736208000000","premium":"-0.0002",
    "method":"current_period","ts":"1736165581000",...}   (fundingTime: the next settlement,
    which fundingRate is the running estimate of)"""
    where = f"OKX WS funding-rate {symbol}"
    premium: Any = row.get("premium") if isinstance(row, dict) else None
    return FundingRate(
        time=floor_minute(_ms(field(row, "ts", where), "ts", where)),
        predicted_funding_rate=parse_decimal(
            field(row, "fundingRate", where), "fundingRate", where
        ),
        premium=parse_decimal(premium, "premium", where) if premium not in (None, "") else None,
        next_funding_time=_ms(field(row, "fundingTime", where), "fundingTime", where),
    )


def _price(row: object, symbol: str, channel: str, name: str) -> tuple[datetime, Decimal]:
    """A price push -> (the minute of its `ts`, the price `name`):

    mark-price     {"instType":"SWAP","instId":"BTC-USDT-SWAP","markPx":"97005.2",
                    "ts":"1736165581000"}
    index-tickers  {"instId":"BTC-USDT","idxPx":"97001.5","high24h":"97500",
                    "low24h":"96000.1","open24h":"96500","sodUtc0":"96800",
                    "sodUtc8":"96900","ts":"1736165581000"}"""
    where = f"OKX WS {channel} {symbol}"
    price = parse_decimal(field(row, name, where), name, where)
    if price <= 0:
        raise ExchangeProtocolError(f"{where}: field {name!r} must be positive, got {price}")
    return floor_minute(_ms(field(row, "ts", where), "ts", where)), price


def _open_interest(row: object, symbol: str) -> OpenInterest:
    """{"instType":"SWAP","instId":"BTC-USDT-SWAP","oi":"512341.23","oiCcy":"5123.4123",
    "oiUsd":"497000000.1","ts":"1736165581000"}   (oi: contracts, oiCcy: coins)"""
    where = f"OKX WS open-interest {symbol}"
    coins = parse_decimal(field(row, "oiCcy", where), "oiCcy", where)
    if coins < 0:
        raise ExchangeProtocolError(f"{where}: negative oiCcy {coins}")
    return OpenInterest(
        time=floor_minute(_ms(field(row, "ts", where), "ts", where)),
        open_interest=coins,
        notional=parse_decimal(field(row, "oiUsd", where), "oiUsd", where),
    )


def _trade(row: object, symbol: str) -> Trade:
    """{"instId":"BTC-USDT","tradeId":"130639474","px":"97001.1","sz":"0.01","side":"buy",
    "ts":"1736165580998","count":"1"}"""
    where = f"OKX WS trades {symbol}"
    side = field(row, "side", where)
    if side not in TAKER_SIDES:
        raise ExchangeProtocolError(f"{where}: side must be buy or sell, got {side!r:.80}")
    return Trade(
        time=_ms(field(row, "ts", where), "ts", where),
        trade_id=text(field(row, "tradeId", where), "tradeId", where),
        price=parse_decimal(field(row, "px", where), "px", where),
        size=parse_decimal(field(row, "sz", where), "sz", where),
        side=side,
    )


def parse_contract_values(payload: object) -> dict[str, Decimal]:
    """A `public/instruments` answer -> swap instId -> base coin per contract::

    {"code":"0","msg":"","data":[{"instType":"SWAP","instId":"BTC-USDT-SWAP","ctVal":"0.01",
     "ctMult":"1","ctValCcy":"BTC","ctType":"linear",...}]}

    Only linear swaps, whose contracts are worth a fixed amount of the coin (`ctValCcy`)."""
    where = "OKX public/instruments"
    if field(payload, "code", where) != "0":
        raise ExchangeProtocolError(f"{where}: OKX refused: {payload!r:.200}")
    values: dict[str, Decimal] = {}
    for row in items(field(payload, "data", where), where):
        symbol = text(field(row, "instId", where), "instId", where)
        if field(row, "ctType", where) != "linear":
            continue
        value = parse_decimal(field(row, "ctVal", f"{where} {symbol}"), "ctVal", where)
        multiplier = parse_decimal(field(row, "ctMult", f"{where} {symbol}"), "ctMult", where)
        if value <= 0 or multiplier <= 0:
            raise ExchangeProtocolError(f"{where} {symbol}: contract value must be positive")
        values[symbol] = value * multiplier
    return values


CONTRACT_VALUES = ContractValueSource(
    market_types=("perps",),
    url_setting="okx_rest_url",
    path="/api/v5/public/instruments?instType=SWAP",
    parse=parse_contract_values,
)
"""Swap trades count contracts; REST `public/instruments` says what one is worth."""


# --- depth (order books: kirby_core.books) ------------------------------------------------


class _BooksArg(msgspec.Struct, gc=False):
    instId: str


class _BooksRow(msgspec.Struct, gc=False):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str
    prevSeqId: int
    seqId: int


class _BooksFrame(msgspec.Struct, gc=False):
    arg: _BooksArg
    action: Literal["snapshot", "update"]
    data: list[_BooksRow]


DEPTH_DECODER = msgspec.json.Decoder(_BooksFrame)
"""The typed decoder of depth frames (`bench.books` times it alone: the engine's limit)."""


def parse_depth(raw: str | bytes, received_at: datetime) -> tuple[BookUpdate, ...]:
    """A `books` push (400 levels; the channel whose messages chain by `prevSeqId`)::

        {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{
         "asks":[["97001.0","1.2","0","3"]],"bids":[["97000.1","0.5","0","1"]],
         "ts":"1736165581000","checksum":0,"prevSeqId":-1,"seqId":123456}]}

    then `"action":"update"` pushes (absolute sizes, "0" deletes; columns 3 and 4 are
    order counts, ignored). A swap's sizes count contracts."""
    try:  # the fast path; anything unexpected goes the checked way, which names it
        frame = DEPTH_DECODER.decode(raw)
        symbol, snapshot = frame.arg.instId, frame.action == "snapshot"
        updates = []
        for row in frame.data:
            sides, ms = text_rows(row.bids, row.asks), row.ts
            if sides is None or not ms.isdigit():
                break
            bids, asks = sides
            time = ms_to_datetime(int(ms))
            updates.append(
                BookUpdate(symbol, snapshot, bids, asks, row.seqId, row.prevSeqId, None, time)
            )
        else:
            if symbol:
                return tuple(updates)
    except msgspec.DecodeError:
        pass
    return _checked_depth(load_depth_frame(raw, "OKX WS books"))


def _checked_depth(message: Any) -> tuple[BookUpdate, ...]:
    where = "OKX WS books"
    arg = field(message, "arg", where)
    symbol = text(field(arg, "instId", where), "instId", where)
    where = f"{where} {symbol}"
    action = field(message, "action", where)
    if action not in ("snapshot", "update"):
        raise ExchangeProtocolError(
            f"{where}: action must be snapshot or update, got {action!r:.40}"
        )
    return tuple(
        BookUpdate(
            symbol=symbol,
            snapshot=action == "snapshot",
            bids=parse_levels(field(row, "bids", where), "bids", where),
            asks=parse_levels(field(row, "asks", where), "asks", where),
            sequence=parse_int(field(row, "seqId", where), "seqId", where),
            previous=parse_int(field(row, "prevSeqId", where), "prevSeqId", where),
            first=None,
            time=_ms(field(row, "ts", where), "ts", where),
        )
        for row in items(field(message, "data", where), where)
    )


DEPTH = DepthChannel(
    subscription=lambda market_type, symbol: {"channel": "books", "instId": symbol},
    parse=parse_depth,
)
"""The book collector's `books` channel: a snapshot, then updates chained by prevSeqId."""
