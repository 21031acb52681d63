"""OKX v5 public REST market data (`/api/v5/...`), spot and USDT swaps.

Serves what ccxt's okx calls for markets, candles, funding, open interest and tickers:
public/time, public/instruments (SPOT, SWAP; FUTURES and OPTION answer empty lists),
market/candles and market/history-candles, public/funding-rate-history,
public/funding-rate, public/mark-price (a swap's, by `instId`, or every swap's for
instType SWAP), market/index-tickers (the index of a swap, `BTC-USDT` for
`BTC-USDT-SWAP`, by `instId`, or every one of a `quoteCcy`; its 24 h figures are the
swap's), public/open-interest, rubik/stat/contracts/open-interest-history, market/ticker
and market/tickers. Every answer is OKX's envelope {"code":"0","msg":"",
"data":[...]}; errors carry OKX's codes (51000 parameter error, 51001 unknown instrument).
Lists are newest first; `after` means older than, `before` newer than (both exclusive).

Candles: rows [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]; swaps count `vol` in
contracts (ctVal BTC 0.01, ETH 0.1, SOL 1), `volCcy` in the coin. `market/candles` holds
the latest 1440 candles at most 300 a call; `history-candles` everything, 100 a call.
Bars 1m..4H, and 6H and longer only UTC-aligned (6Hutc, 12Hutc, 1Dutc, 1Wutc, 1Mutc):
the simulator does not serve OKX's Hong Kong-aligned 6H/12H/1D/1W/1M bars.
Trades (market/history-trades) newest first, 100 a call, the last 3 months (`type` 1: `after`
a trade id, 2: epoch ms; `before` is not served). Funding history 100 a call; the statistics
endpoint serves the latest 1440 periods, 100 a call. Rate limits per endpoint and IP
(requests per 2 s, OKX's numbers); beyond them HTTP 429 with code 50011.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from kirby_core.exchanges import okx as okx_rest
from kirby_sim.candles import Bar, CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.derivatives import RATE_DECIMALS
from kirby_sim.intervals import MINUTE_MS, floor_open, next_open, shift_open
from kirby_sim.market import Market
from kirby_sim.perp_stats import PerpStats, day_stats
from kirby_sim.prices import QUOTE_DECIMALS
from kirby_sim.prints import IDS_PER_MINUTE, minute_prints
from kirby_sim.universe import OKX_SPOT_VENUE, OKX_SWAP_VENUE, Instrument
from kirby_sim.venue_limits import RequestWindow
from kirby_sim.wire import encode, plain_decimal

PREFIX = "/api/v5/"
CANDLES_LIMIT = 300
CANDLES_DEFAULT = 100
RECENT_CANDLES = 1440
HISTORY_CANDLES_LIMIT = 100
FUNDING_LIMIT = 100
STATISTICS_LIMIT = 100
STATISTICS_PERIODS = 1440
TRADES_LIMIT = okx_rest.TRADE_LIMIT
TRADES_SPAN_MS = int(okx_rest.TRADE_SPAN.total_seconds() * 1000)
"""history-trades serves the last 3 months (the declaration's)."""
REQUESTS_PER_2_SECONDS: dict[str, int] = {
    "public/time": 10, "public/instruments": 20, "market/candles": 40,
    "market/history-candles": 20, "public/funding-rate-history": 10,
    "public/funding-rate": 20, "public/mark-price": 10, "market/index-tickers": 20,
    "public/open-interest": 20,
    "rubik/stat/contracts/open-interest-history": 5, "market/ticker": 20, "market/tickers": 20,
    "market/history-trades": 20,
}  # fmt: skip
BARS: dict[str, str] = {
    "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "1h", "2H": "2h",
    "4H": "4h", "6Hutc": "6h", "12Hutc": "12h", "1Dutc": "1d", "1Wutc": "1w", "1Mutc": "1M",
}  # fmt: skip
STATISTICS_PERIOD_MS: dict[str, int] = {
    "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1H": 3_600_000, "2H": 7_200_000,
    "4H": 14_400_000, "6Hutc": 21_600_000, "12Hutc": 43_200_000, "1Dutc": 86_400_000,
}  # fmt: skip
CONTRACT_VALUE_DECIMALS: dict[str, int] = {
    "BTC-USDT-SWAP": 2,
    "ETH-USDT-SWAP": 1,
    "SOL-USDT-SWAP": 0,
}
"""ctVal = 10**-n coin per contract (1 coin for other swaps: the synthetic ones)."""
INST_TYPES = {"SPOT": OKX_SPOT_VENUE, "SWAP": OKX_SWAP_VENUE}
EMPTY_INST_TYPES = ("FUTURES", "OPTION", "MARGIN")


class OkxError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def rate_limited() -> web.Response:
    text = encode(
        {
            "code": "50011",
            "msg": "Rate limit reached. Please refer to API documentation and throttle "
            "requests accordingly.",
            "data": [],
        }
    )
    return web.Response(status=429, text=text, content_type="application/json")


def server_error(status: int) -> web.Response:
    text = encode({"code": "50001", "msg": "Service temporarily unavailable", "data": []})
    return web.Response(status=status, text=text, content_type="application/json")


def inst_type(inst: Instrument) -> str:
    return "SWAP" if inst.venue == OKX_SWAP_VENUE else "SPOT"


def price(inst: Instrument, units: int) -> str:
    return plain_decimal(units, inst.price_decimals)


def coin_size(inst: Instrument, lots: int) -> str:
    return plain_decimal(lots, inst.size_decimals)


def size(inst: Instrument, lots: int) -> str:
    """A size as OKX counts it: contracts on swaps, the coin on spot."""
    if inst.venue == OKX_SWAP_VENUE:
        return plain_decimal(lots, inst.size_decimals - CONTRACT_VALUE_DECIMALS.get(inst.symbol, 0))
    return coin_size(inst, lots)


def _quote(units: int) -> str:
    return plain_decimal(units, QUOTE_DECIMALS)


def candle_row(inst: Instrument, bar: Bar, closed: bool) -> list[str]:
    base = coin_size(inst, bar.volume)
    return [
        str(bar.open_ms),
        price(inst, bar.open),
        price(inst, bar.high),
        price(inst, bar.low),
        price(inst, bar.close),
        size(inst, bar.volume),
        base if inst.venue == OKX_SWAP_VENUE else _quote(bar.quote),
        _quote(bar.quote),
        "1" if closed else "0",
    ]


def ticker(market: Market, inst: Instrument, now_ms: int) -> dict[str, str]:
    book = market.book(inst.venue, inst.symbol)
    assert book is not None
    day = day_stats(book, now_ms)
    one = 10 ** (inst.size_decimals - CONTRACT_VALUE_DECIMALS.get(inst.symbol, 0))
    midnight = now_ms // 86_400_000 * 86_400_000
    return {
        "instType": inst_type(inst),
        "instId": inst.symbol,
        "last": price(inst, day.last),
        "lastSz": size(inst, one),
        "askPx": price(inst, day.last + inst.tick_units),
        "askSz": size(inst, one),
        "bidPx": price(inst, day.last),
        "bidSz": size(inst, one),
        "open24h": price(inst, day.open),
        "high24h": price(inst, day.high),
        "low24h": price(inst, day.low),
        "volCcy24h": coin_size(inst, day.volume)
        if inst.venue == OKX_SWAP_VENUE
        else _quote(day.quote),
        "vol24h": size(inst, day.volume),
        "ts": str(now_ms),
        "sodUtc0": price(inst, book.forming_minute(midnight).open),
        "sodUtc8": price(inst, book.forming_minute(midnight - 8 * 3_600_000).open),
    }


def open_interest_document(perp: PerpStats, at_ms: int) -> dict[str, str]:
    inst = perp.instrument
    lots = perp.open_interest(at_ms)
    usd = lots * perp.mark_price(at_ms)
    return {
        "instType": "SWAP",
        "instId": inst.symbol,
        "oi": size(inst, lots),
        "oiCcy": coin_size(inst, lots),
        "oiUsd": plain_decimal(usd, inst.size_decimals + inst.price_decimals),
        "ts": str(at_ms),
    }


def mark_price(perp: PerpStats, at_ms: int) -> dict[str, str]:
    """A swap's mark price at `at_ms` (REST public/mark-price and the mark-price channel)."""
    inst = perp.instrument
    return {
        "instType": "SWAP",
        "instId": inst.symbol,
        "markPx": price(inst, perp.mark_price(at_ms)),
        "ts": str(at_ms),
    }


def index_ticker(market: Market, perp: PerpStats, at_ms: int) -> dict[str, str]:
    """The index of a swap at `at_ms` (REST market/index-tickers and the index-tickers
    channel); the simulator keeps no index history: the 24 h figures are the swap's."""
    inst = perp.instrument
    day = ticker(market, inst, at_ms)
    return {
        "instId": inst.symbol.removesuffix("-SWAP"),
        "idxPx": price(inst, perp.index_price(at_ms)),
        "high24h": day["high24h"],
        "low24h": day["low24h"],
        "open24h": day["open24h"],
        "sodUtc0": day["sodUtc0"],
        "sodUtc8": day["sodUtc8"],
        "ts": str(at_ms),
    }


def funding_rate(perp: PerpStats, now_ms: int) -> dict[str, str]:
    """The live funding of a swap (REST public/funding-rate and the funding-rate channel)."""
    rate = plain_decimal(perp.live_rate(now_ms), RATE_DECIMALS)
    next_settlement = perp.next_funding_ms(now_ms)
    return {
        "instType": "SWAP",
        "instId": perp.instrument.symbol,
        "fundingRate": rate,
        "fundingTime": str(next_settlement),
        "nextFundingRate": "",
        "nextFundingTime": str(next_settlement + 8 * 3_600_000),
        "premium": plain_decimal(perp.live_rate(now_ms) - 10_000, RATE_DECIMALS),
        "settFundingRate": rate,
        "settState": "settled",
        "method": "current_period",
        "formulaType": "withRate",
        "interestRate": "0.0001",
        "maxFundingRate": "0.0075",
        "minFundingRate": "-0.0075",
        "impactValue": "20000",
        "ts": str(now_ms),
    }


class Okx:
    def __init__(self, market: Market, clock: VirtualClock, rate_limits: bool) -> None:
        self.market = market
        self.clock = clock
        self._windows = {
            name: RequestWindow(limit if rate_limits else None, 2.0)
            for name, limit in REQUESTS_PER_2_SECONDS.items()
        }

    def routes(self) -> list[web.RouteDef]:
        handlers: dict[str, Callable[[Any, int], list[Any]]] = {
            "public/time": lambda query, now: [{"ts": str(now)}],
            "public/instruments": self._instruments,
            "market/candles": self._candles,
            "market/history-candles": self._history_candles,
            "public/funding-rate-history": self._funding_history,
            "public/funding-rate": lambda query, now: [funding_rate(self._perp(query), now)],
            "public/mark-price": self._mark_prices,
            "market/index-tickers": self._index_tickers,
            "public/open-interest": lambda query, now: [
                open_interest_document(self._perp(query), now)
            ],
            "rubik/stat/contracts/open-interest-history": self._open_interest_history,
            "market/ticker": lambda query, now: [ticker(self.market, self._inst(query), now)],
            "market/tickers": self._tickers,
            "market/history-trades": self._history_trades,
        }
        return [
            web.get(f"{PREFIX}{name}", self._wrap(name, handler))
            for name, handler in handlers.items()
        ]

    def _wrap(
        self, name: str, handler: Callable[[Any, int], list[Any]]
    ) -> Callable[[web.Request], Any]:
        async def endpoint(request: web.Request) -> web.Response:
            if self._windows[name].acquire(request.remote or "unknown") is not None:
                return rate_limited()
            try:
                document = {
                    "code": "0",
                    "msg": "",
                    "data": handler(request.query, self.clock.now_ms()),
                }
            except OkxError as exc:
                document = {"code": exc.code, "msg": exc.msg, "data": []}
            return web.Response(text=encode(document), content_type="application/json")

        return endpoint

    # --- helpers ----------------------------------------------------------------------

    def _inst(self, query: Any) -> Instrument:
        book = self._book(query)
        return book.instrument

    def _book(self, query: Any) -> CandleBook:
        inst_id = query.get("instId", "")
        if not inst_id:
            raise OkxError("50014", "Parameter instId can not be empty.")
        venue = OKX_SWAP_VENUE if inst_id.endswith("-SWAP") else OKX_SPOT_VENUE
        book = self.market.book(venue, inst_id)
        if book is None:
            raise OkxError("51001", "Instrument ID does not exist.")
        return book

    def _perp(self, query: Any) -> PerpStats:
        inst = self._inst(query)
        perp = self.market.perp(inst.venue, inst.symbol)
        if perp is None:
            raise OkxError("51001", "Instrument ID does not exist.")
        return perp

    @staticmethod
    def _int(query: Any, name: str) -> int | None:
        value = query.get(name)
        if value is None or value == "":
            return None
        if not value.lstrip("-").isdigit():
            raise OkxError("51000", f"Parameter {name} error")
        return int(value)

    def _limit(self, query: Any, default: int, maximum: int) -> int:
        limit = self._int(query, "limit")
        if limit is None:
            return default
        if limit < 1:
            raise OkxError("51000", "Parameter limit error")
        return min(limit, maximum)

    # --- endpoints --------------------------------------------------------------------

    def _instruments(self, query: Any, now: int) -> list[Any]:
        kind = query.get("instType", "")
        if kind in EMPTY_INST_TYPES:
            return []
        if kind not in INST_TYPES:
            raise OkxError("51000", "Parameter instType error")
        rows = [_instrument(inst) for inst in self.market.instruments[INST_TYPES[kind]]]
        inst_id = query.get("instId")
        return [row for row in rows if not inst_id or row["instId"] == inst_id]

    def _mark_prices(self, query: Any, now: int) -> list[Any]:
        """One swap's mark price (`instId`), or every swap's (instType SWAP); the simulator
        keeps no margin, futures or option marks."""
        if query.get("instId"):
            return [mark_price(self._perp(query), now)]
        kind = query.get("instType", "")
        if kind in EMPTY_INST_TYPES:
            return []
        if kind != "SWAP":
            raise OkxError("50014", "Parameter instType can not be empty.")
        swaps = self.market.instruments[OKX_SWAP_VENUE]
        perps = (self.market.perp(OKX_SWAP_VENUE, inst.symbol) for inst in swaps)
        return [mark_price(perp, now) for perp in perps if perp is not None]

    def _index_tickers(self, query: Any, now: int) -> list[Any]:
        """One index (`instId`: a swap's underlying) or every one quoted in `quoteCcy`."""
        index = query.get("instId", "")
        if index:
            return [index_ticker(self.market, self._perp({"instId": f"{index}-SWAP"}), now)]
        quote = query.get("quoteCcy", "")
        if not quote:
            raise OkxError("50014", "Parameter quoteCcy can not be empty.")
        swaps = self.market.instruments[OKX_SWAP_VENUE]
        perps = (self.market.perp(OKX_SWAP_VENUE, inst.symbol) for inst in swaps)
        return [
            index_ticker(self.market, perp, now)
            for perp in perps
            if perp is not None and perp.instrument.symbol.endswith(f"-{quote}-SWAP")
        ]

    def _candles(self, query: Any, now: int) -> list[Any]:
        return self._candle_rows(query, now, CANDLES_LIMIT, recent_only=True)

    def _history_candles(self, query: Any, now: int) -> list[Any]:
        return self._candle_rows(query, now, HISTORY_CANDLES_LIMIT, recent_only=False)

    def _candle_rows(self, query: Any, now: int, maximum: int, recent_only: bool) -> list[Any]:
        book = self._book(query)
        interval = BARS.get(query.get("bar", "1m"))
        if interval is None:
            raise OkxError("51000", "Parameter bar error")
        limit = self._limit(query, CANDLES_DEFAULT, maximum)
        after = self._int(query, "after")
        before = self._int(query, "before")
        forming = floor_open(interval, now)
        last_open = forming if after is None else min(forming, floor_open(interval, after - 1))
        first_open = book.first_open(interval)
        if recent_only:
            first_open = max(first_open, shift_open(interval, forming, -(RECENT_CANDLES - 1)))
        if before is not None:
            first_open = max(first_open, next_open(interval, floor_open(interval, before)))
        first_open = max(first_open, shift_open(interval, last_open, -(limit - 1)))
        if last_open < first_open:
            return []
        bars = book.bars(interval, first_open, last_open, now)
        inst = book.instrument
        return [candle_row(inst, bar, bar.open_ms < forming) for bar in reversed(bars)]

    def _funding_history(self, query: Any, now: int) -> list[Any]:
        perp = self._perp(query)
        limit = self._limit(query, FUNDING_LIMIT, FUNDING_LIMIT)
        after = self._int(query, "after")
        before = self._int(query, "before")
        end = now if after is None else min(now, after - 1)
        start = end - limit * 8 * 3_600_000 if before is None else before + 1
        rows = perp.funding_rows(start, end)[-limit:]
        return [
            {
                "instType": "SWAP",
                "instId": perp.instrument.symbol,
                "formulaType": "withRate",
                "fundingRate": plain_decimal(row.rate, RATE_DECIMALS),
                "realizedRate": plain_decimal(row.rate, RATE_DECIMALS),
                "fundingTime": str(row.time_ms),
                "method": "current_period",
            }
            for row in reversed(rows)
        ]

    def _open_interest_history(self, query: Any, now: int) -> list[Any]:
        perp = self._perp(query)
        period = STATISTICS_PERIOD_MS.get(query.get("period", "5m"))
        if period is None:
            raise OkxError("51000", "Parameter period error")
        limit = self._limit(query, STATISTICS_LIMIT, STATISTICS_LIMIT)
        begin = self._int(query, "begin")
        end = self._int(query, "end")
        last = (now if end is None else min(now, end - 1)) // period
        first = max(
            now // period - STATISTICS_PERIODS + 1,
            -(-perp.instrument.listed_ms // period),
            last - limit + 1,
        )
        if begin is not None:
            first = max(first, begin // period + 1)
        rows = []
        for slot in range(last, first - 1, -1):
            entry = open_interest_document(perp, slot * period)
            rows.append([entry["ts"], entry["oi"], entry["oiCcy"], entry["oiUsd"]])
        return rows

    def _history_trades(self, query: Any, now: int) -> list[Any]:
        """Trades newest first, older than `after` (a trade id with `type=1`, the default;
        epoch ms with `type=2`), of the last `TRADES_SPAN_MS` only."""
        book = self._book(query)
        kind = query.get("type") or "1"
        if kind not in ("1", "2"):
            raise OkxError("51000", "Parameter type error")
        limit = self._limit(query, TRADES_LIMIT, TRADES_LIMIT)
        after = self._int(query, "after")
        upper_ms, below_id = now, None
        if after is not None and kind == "2":
            upper_ms = min(now, after - 1)
        elif after is not None:
            below_id = after
            upper_ms = min(now, (after // IDS_PER_MINUTE + 1) * MINUTE_MS - 1)
        floor_minute = max(
            (now - TRADES_SPAN_MS) // MINUTE_MS, -(-book.instrument.listed_ms // MINUTE_MS)
        )
        inst = book.instrument
        rows: list[dict[str, str]] = []
        minute = upper_ms // MINUTE_MS
        while len(rows) < limit and minute >= floor_minute:
            for trade in reversed(minute_prints(book, minute)):
                if trade.time_ms > upper_ms or (
                    below_id is not None and trade.trade_id >= below_id
                ):
                    continue
                rows.append(
                    {
                        "instId": inst.symbol,
                        "side": "buy" if trade.buy else "sell",
                        "sz": size(inst, trade.size),
                        "px": price(inst, trade.price),
                        "source": "0",
                        "tradeId": str(trade.trade_id),
                        "ts": str(trade.time_ms),
                    }
                )
            minute -= 1
        return rows[:limit]

    def _tickers(self, query: Any, now: int) -> list[Any]:
        kind = query.get("instType", "")
        if kind not in INST_TYPES:
            raise OkxError("51000", "Parameter instType error")
        return [
            ticker(self.market, inst, now) for inst in self.market.instruments[INST_TYPES[kind]]
        ]


def _instrument(inst: Instrument) -> dict[str, str]:
    swap = inst.venue == OKX_SWAP_VENUE
    contract_decimals = CONTRACT_VALUE_DECIMALS.get(inst.symbol, 0)
    lot = plain_decimal(1, inst.size_decimals - contract_decimals if swap else inst.size_decimals)
    return {
        "instType": inst_type(inst),
        "instId": inst.symbol,
        "instFamily": f"{inst.coin}-USDT" if swap else "",
        "uly": f"{inst.coin}-USDT" if swap else "",
        "baseCcy": "" if swap else inst.coin,
        "quoteCcy": "" if swap else "USDT",
        "settleCcy": "USDT" if swap else "",
        "ctVal": plain_decimal(1, contract_decimals) if swap else "",
        "ctMult": "1" if swap else "",
        "ctValCcy": inst.coin if swap else "",
        "ctType": "linear" if swap else "",
        "tickSz": plain_decimal(inst.tick_units, inst.price_decimals),
        "lotSz": lot,
        "minSz": lot,
        "maxLmtSz": "100000000",
        "maxMktSz": "1000000",
        "lever": "100" if swap else "10",
        "listTime": str(inst.listed_ms),
        "contTdSwTime": str(inst.listed_ms),
        "expTime": "",
        "state": "live",
        "alias": "",
        "optType": "",
        "stk": "",
        "category": "1",
    }
