"""Outages as data: windows in which the collector may have missed what the exchange sent.

Two things open an outage window:

- a feed gap: the connection dropped, a symbol (or the whole feed) went quiet, or a REST
  poll failed. The window of each affected unit (a symbol on a connection, a polled series)
  runs from the last data received for it to the first data received after it came back
  (for a trade tape, `"<symbol> trades"`: from the last trade's time to the time of the
  first trade after, so exactly the trades that may be missing fall inside; a replay of
  trades already held ends it where it began),
  and becomes one `collection_outages` row per series the unit carries there (its candle
  starlistings, its funding and open-interest pair) when it ends;
- a predecessor: the previous collector was killed or stopped; the window of each coin runs
  from the predecessor's last stored data to this collector's first data of the coin
  (see `succession`);
- a memory shed: with the database unreachable for long, the buffers hit their bound and
  the oldest rows were dropped; the window spans the dropped rows' times per series.

A candle whose period overlaps a window may be incomplete; a backfill repairs it. `FeedGaps`
is driven by the collector's single parsing task, in the order frames were received, so a
gap never closes on a frame that arrived before the feed was lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg


class SeriesOf(Protocol):
    """A feed's plan: the stored series behind one of its units (a symbol, a poll)."""

    def series(self, unit: str, /) -> list[tuple[str, int]]: ...


@dataclass(frozen=True)
class Outage:
    dataset: str
    series_id: int
    start_time: datetime
    end_time: datetime
    reason: str


@dataclass
class _Gap:
    start: datetime
    reason: str


class FeedGaps:
    """Per coin: when data was last seen, and the gap opened since, if any."""

    def __init__(self) -> None:
        self.first_data: dict[str, datetime] = {}
        self.last_data: dict[str, datetime] = {}
        self._open: dict[str, _Gap] = {}

    @property
    def open_coins(self) -> frozenset[str]:
        return frozenset(self._open)

    @property
    def since(self) -> datetime | None:
        """Start of the oldest open gap: nothing received is missing before it."""
        return min((gap.start for gap in self._open.values()), default=None)

    def lost(self, coins: Iterable[str], at: datetime, reason: str) -> None:
        """The feed of `coins` stopped (a disconnect, a stall); already open gaps are kept."""
        for coin in coins:
            if coin not in self._open:
                self._open[coin] = _Gap(self.last_data.get(coin, at), reason)

    def inherit(
        self, coins: Iterable[str], since: datetime, catalog: SeriesOf, reason: str
    ) -> list[Outage]:
        """A predecessor stored data up to `since`: coins seen since get their window now,
        the others a gap from `since` that their first data closes."""
        outages: list[Outage] = []
        for coin in coins:
            first = self.first_data.get(coin)
            if first is not None:
                if first > since:
                    outages += _rows(catalog, coin, _Gap(since, reason), first, reason)
            else:
                gap = self._open.get(coin)
                start = since if gap is None else min(gap.start, since)
                self._open[coin] = _Gap(start, reason if gap is None else gap.reason)
        return outages

    def saw_data(
        self, coin: str, at: datetime, catalog: SeriesOf, through: datetime | None = None
    ) -> list[Outage]:
        """Data of `coin` from `at` through `through` (a push of trades: its first and last
        trade time; default: `at` alone) arrived: an open gap ends at `at`. Trades that reach
        back to the gap's start (a replay of recent trades on resubscribing) close it with
        nothing missing: no outage."""
        latest = at if through is None else through
        last = self.last_data.get(coin)
        self.last_data[coin] = latest if last is None or latest > last else last
        if coin not in self.first_data:
            self.first_data[coin] = at
        gap = self._open.pop(coin, None) if self._open else None
        if gap is None or (through is not None and at <= gap.start):
            return []
        return _rows(catalog, coin, gap, at, gap.reason)

    def close(
        self, coins: Iterable[str], at: datetime, catalog: SeriesOf, why: str
    ) -> list[Outage]:
        """End the gaps of `coins` without data (unsubscribed, collector stopping)."""
        outages: list[Outage] = []
        for coin in coins:
            gap = self._open.pop(coin, None)
            if gap is not None:
                outages += _rows(catalog, coin, gap, at, f"{gap.reason}; {why}")
        return outages


def _rows(catalog: SeriesOf, coin: str, gap: _Gap, end: datetime, reason: str) -> list[Outage]:
    return [
        Outage(dataset, series_id, gap.start, max(end, gap.start), reason)
        for dataset, series_id in catalog.series(coin)
    ]


async def insert_outages(conn: asyncpg.Connection, outages: Sequence[Outage]) -> None:
    if not outages:
        return
    await conn.execute(
        """INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)
           SELECT * FROM unnest($1::text[], $2::integer[], $3::timestamptz[],
                                $4::timestamptz[], $5::text[])""",
        *_columns(outages),
    )


def _columns(outages: Sequence[Outage]) -> list[list]:
    return [
        [o.dataset for o in outages],
        [o.series_id for o in outages],
        [o.start_time for o in outages],
        [o.end_time for o in outages],
        [o.reason for o in outages],
    ]
