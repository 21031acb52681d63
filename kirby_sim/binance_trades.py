"""Binance trade history: `/api/v3/aggTrades` and `/api/v3/historicalTrades` (spot), and
`/fapi/v1/aggTrades` (USD-M).

Trades are the simulator's prints (`prints`, sequential ids like Binance's). aggTrades:
one aggregate per trade event (its trades share price, side and time): `a` is the event's
first trade id (the simulator's shortcut: Binance numbers aggregates on their own), `f`/`l`
its first and last trade ids, `q` their summed quantity; with `fromId` aggregates from that
id, else with startTime/endTime (less than an hour apart, Binance's rule) those in the
window, else the latest; `limit` default 500, at most 1000. historicalTrades: trades from
`fromId` (default: the latest `limit`), `limit` default 500, at most 1000.
"""

from __future__ import annotations

from typing import Any

from kirby_core.exchanges import binance
from kirby_sim import binance_futures as fmt
from kirby_sim.candles import CandleBook
from kirby_sim.intervals import MINUTE_MS
from kirby_sim.prices import QUOTE_DECIMALS
from kirby_sim.prints import IDS_PER_DAY, MINUTES_PER_DAY, Print, minute_prints, prints_between

DEFAULT_LIMIT = 500
MAX_LIMIT = binance.TRADE_LIMIT
HOUR_MS = 3_600_000
AGG_TRADES_WEIGHT = binance.AGG_TRADES_WEIGHT
HISTORICAL_TRADES_WEIGHT = binance.HISTORICAL_TRADES_WEIGHT
SEARCH_DAYS = 2
"""How many days past `fromId`'s a lookup walks before answering an empty page."""


def _trade(book: CandleBook, row: Print) -> dict[str, Any]:
    inst = book.instrument
    shift = QUOTE_DECIMALS - inst.price_decimals - inst.size_decimals
    quote = row.price * row.size * 10**shift if shift >= 0 else row.price * row.size // 10**-shift
    return {
        "id": row.trade_id,
        "price": fmt.price(inst, row.price),
        "qty": fmt.size(inst, row.size),
        "quoteQty": fmt.quote(inst, quote),
        "time": row.time_ms,
        "isBuyerMaker": not row.buy,
        "isBestMatch": True,
    }


def _aggregates(book: CandleBook, rows: list[Print]) -> list[dict[str, Any]]:
    inst = book.instrument
    grouped: list[list[Print]] = []
    for row in rows:
        last = grouped[-1][-1] if grouped else None
        if (
            last is not None
            and (last.time_ms, last.price, last.buy) == (row.time_ms, row.price, row.buy)
            and row.trade_id == last.trade_id + 1
        ):
            grouped[-1].append(row)
        else:
            grouped.append([row])
    return [
        {
            "a": group[0].trade_id,
            "p": fmt.price(inst, group[0].price),
            "q": fmt.size(inst, sum(r.size for r in group)),
            "f": group[0].trade_id,
            "l": group[-1].trade_id,
            "T": group[0].time_ms,
            "m": not group[0].buy,
            "M": True,
        }
        for group in grouped
    ]


def _from_id(book: CandleBook, from_id: int, limit: int, now_ms: int) -> list[Print]:
    """Up to `limit` trades with id >= `from_id`, up to `now_ms`."""
    day = from_id // IDS_PER_DAY
    found: list[Print] = []
    last_day = now_ms // MINUTE_MS // MINUTES_PER_DAY
    first_day = day
    while day <= last_day and len(found) < limit and day <= first_day + SEARCH_DAYS:
        for minute in range(day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY):
            if minute * MINUTE_MS > now_ms:
                break
            found += [
                r
                for r in minute_prints(book, minute, "sequential")
                if r.trade_id >= from_id and r.time_ms <= now_ms
            ]
            if len(found) >= limit:
                break
        day += 1
    return found[:limit]


def _latest(book: CandleBook, limit: int, now_ms: int) -> list[Print]:
    rows: list[Print] = []
    minute = now_ms // MINUTE_MS
    floor = -(-book.instrument.listed_ms // MINUTE_MS)
    while len(rows) < limit and minute >= floor:
        rows = [
            r for r in minute_prints(book, minute, "sequential") if r.time_ms <= now_ms
        ] + rows
        minute -= 1
    return rows[-limit:]


def agg_trades(
    book: CandleBook,
    from_id: int | None,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
    now_ms: int,
) -> list[dict[str, Any]]:
    if from_id is not None:
        return _aggregates(book, _from_id(book, from_id, limit * 4, now_ms))[:limit]
    if start_ms is not None or end_ms is not None:
        start = start_ms if start_ms is not None else end_ms - HOUR_MS  # type: ignore[operator]
        end = end_ms if end_ms is not None else start + HOUR_MS
        rows = prints_between(book, start - 1, start - 1, min(end, now_ms), "sequential")
        return _aggregates(book, rows)[:limit]
    return _aggregates(book, _latest(book, limit * 4, now_ms))[-limit:]


def historical_trades(
    book: CandleBook, from_id: int | None, limit: int, now_ms: int
) -> list[dict[str, Any]]:
    rows = _latest(book, limit, now_ms) if from_id is None else _from_id(book, from_id, limit, now_ms)
    return [_trade(book, row) for row in rows]
