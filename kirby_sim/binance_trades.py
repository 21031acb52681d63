"""Binance aggregate trades: `/api/v3/aggTrades` (spot) and `/fapi/v1/aggTrades` (USD-M).

Trades are the simulator's prints (`prints`, sequentially numbered like Binance's). One
aggregate per run of trades sharing time, price and taker side (in the simulator, one trade
event): `f`/`l` its first and last trade ids, `q` their summed quantity, `a` its first trade
id (the simulator's shortcut: Binance numbers aggregates on their own, consecutively; both
increase, which is all `fromId` paging needs). With `fromId` the aggregates from that id on;
else with startTime/endTime (under an hour apart, Binance's rule) those in the window; else
the latest. `limit` default 500, at most 1000.
"""

from __future__ import annotations

from typing import Any

from kirby_core.exchanges import binance
from kirby_sim import binance_futures as fmt
from kirby_sim.candles import CandleBook
from kirby_sim.intervals import MINUTE_MS
from kirby_sim.prints import IDS_PER_DAY, MINUTES_PER_DAY, Print, minute_prints, prints_between

WINDOW_MS = int(binance.AGG_TRADES_WINDOW.total_seconds() * 1000)
"""startTime and endTime must be less than this apart."""
SEARCH_DAYS = 2
"""How many days past `fromId`'s a lookup walks before answering what it found."""


def _groups(rows: list[Print]) -> list[list[Print]]:
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
    return grouped


def _aggregate(book: CandleBook, group: list[Print]) -> dict[str, Any]:
    inst = book.instrument
    return {
        "a": group[0].trade_id,
        "p": fmt.price(inst, group[0].price),
        "q": fmt.size(inst, sum(r.size for r in group)),
        "f": group[0].trade_id,
        "l": group[-1].trade_id,
        "T": group[0].time_ms,
        "m": not group[0].buy,
        "M": True,
    }


def _from_id(book: CandleBook, from_id: int, limit: int, now_ms: int) -> list[list[Print]]:
    """Up to `limit` whole aggregates whose trades have ids >= `from_id`, up to `now_ms`."""
    first_day = from_id // IDS_PER_DAY
    last_minute = now_ms // MINUTE_MS
    found: list[list[Print]] = []
    minute = max(first_day * MINUTES_PER_DAY, -(-book.instrument.listed_ms // MINUTE_MS))
    while minute <= last_minute and minute < (first_day + SEARCH_DAYS + 1) * MINUTES_PER_DAY:
        rows = [
            r
            for r in minute_prints(book, minute, "sequential")
            if r.trade_id >= from_id and r.time_ms <= now_ms
        ]
        found += _groups(rows)  # a group never spans minutes: it shares one time
        if len(found) >= limit:
            break
        minute += 1
    return found[:limit]


def agg_trades(
    book: CandleBook,
    from_id: int | None,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
    now_ms: int,
) -> list[dict[str, Any]]:
    if from_id is not None:
        groups = _from_id(book, from_id, limit, now_ms)
    elif start_ms is not None or end_ms is not None:
        start = start_ms if start_ms is not None else end_ms - WINDOW_MS + 1  # type: ignore[operator]
        end = end_ms if end_ms is not None else start + WINDOW_MS - 1
        rows = prints_between(book, start - 1, start - 1, min(end, now_ms), "sequential")
        groups = _groups(rows)[:limit]
    else:
        minute, floor = now_ms // MINUTE_MS, -(-book.instrument.listed_ms // MINUTE_MS)
        groups = []
        while len(groups) < limit and minute >= floor:
            rows = [r for r in minute_prints(book, minute, "sequential") if r.time_ms <= now_ms]
            groups = _groups(rows) + groups
            minute -= 1
        groups = groups[-limit:]
    return [_aggregate(book, group) for group in groups]
