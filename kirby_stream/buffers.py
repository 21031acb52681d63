"""The collector's memory between the feed and the database: latest state per row key.

- candles: one row per (starlisting, open time), replaced by every push, so a flush writes
  the candle as it stands (forming, then final once its closing push arrived); every flush
  takes all of them;
- funding rates and open interest: one row per (trading pair, minute) holding the latest
  value received in that minute; a flush takes only the minutes that have closed (all of
  them when the collector stops);
- trades: one row per (trading pair, time, exchange trade id), so a trade repeated by the
  feed (a resubscription's replay) is buffered once; every flush takes all of them;
- outages waiting to be written (see `outages`).

A flush `take`s a `Batch`; if the write fails the batch is `restore`d, newer state winning
over the restored rows, and retried later. The number of buffered rows is bounded: past
`max_rows` the oldest rows are dropped (down to 90 % of the bound, so shedding is rare),
counted, logged, and recorded as outages of the series they belonged to. Nothing here does
I/O or reads a clock: the caller passes times in.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from kirby_core.datasets import DATASETS
from kirby_core.db.trades import TRADES_TABLE as TRADES
from kirby_core.db.trades import TradeRow
from kirby_core.models import CandleRow, FundingRateRow, OpenInterestRow
from kirby_core.timeutil import floor_minute
from kirby_stream.latency import Arrivals
from kirby_stream.outages import Outage

log = logging.getLogger(__name__)

TABLES = (*DATASETS, TRADES)
"""What a batch holds: the minute datasets (upserted by `kirby_core.db.writer`) and the
trade tape (`kirby_core.db.trades.write_trades`)."""
SHED_TO = 0.9

RowKey = tuple[Any, ...]
"""(series id, time) of a minute row; (trading pair id, time, trade id) of a trade."""


def row_key(table: str, row: NamedTuple) -> RowKey:
    return (row[0], row[1], row[2]) if table == TRADES else (row[0], row[1])


@dataclass
class Batch:
    """Rows taken for one flush, by table, with the receive times of the candle messages
    they hold (monotonic seconds, for the message-to-commit latency)."""

    rows: dict[str, list[NamedTuple]] = field(default_factory=lambda: {t: [] for t in TABLES})
    outages: list[Outage] = field(default_factory=list)
    candle_received: Arrivals = field(default_factory=Arrivals)
    covered_through: datetime | None = None
    """Once stored, everything received before this data time is stored."""

    def __bool__(self) -> bool:
        return bool(self.outages) or any(self.rows.values())


class Buffers:
    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._tables: dict[str, dict[RowKey, NamedTuple]] = {t: {} for t in TABLES}
        self._candles = self._tables["candles"]
        self._funding = self._tables["funding_rates"]
        self._interest = self._tables["open_interest"]
        self._trades = self._tables[TRADES]
        self._candle_received = Arrivals()
        self.outages: list[Outage] = []
        self.dropped = 0
        """Rows dropped by the memory bound since the collector started."""
        self._writing: Batch | None = None
        """The batch last taken, until it is stored or restored."""
        self.received: dict[object, datetime] = {}
        """Per feed (a connection, a poll): data time of the latest frame handled there;
        everything it received before is in here."""
        self.gaps: dict[object, datetime | None] = {}
        """Per feed: start of its oldest open gap; data after it may be missing."""

    @property
    def received_through(self) -> datetime | None:
        """How far every feed's data has been handled (the slowest feed's)."""
        return min(self.received.values(), default=None)

    @received_through.setter
    def received_through(self, value: datetime) -> None:
        self.received[None] = value

    @property
    def gaps_since(self) -> datetime | None:
        """Start of the oldest open gap of any feed."""
        return min((since for since in self.gaps.values() if since is not None), default=None)

    @gaps_since.setter
    def gaps_since(self, value: datetime | None) -> None:
        self.gaps[None] = value

    def sizes(self) -> dict[str, int]:
        """Rows buffered, by table (a batch being written is not among them)."""
        return {table: len(rows) for table, rows in self._tables.items()}

    def held(self) -> dict[str, int]:
        """Rows in memory and not yet stored, by table: buffered, or in the batch being
        written (which a failed write puts back)."""
        writing = self._writing.rows if self._writing is not None else {}
        return {
            table: len(rows) + len(writing.get(table, ())) for table, rows in self._tables.items()
        }

    def finished(self, batch: Batch) -> None:
        """The write of `batch` ended (stored, or failed and put back): no longer in flight."""
        if self._writing is batch:
            self._writing = None

    @property
    def size(self) -> int:
        return len(self._candles) + len(self._funding) + len(self._interest) + len(self._trades)

    def add_candle(self, row: CandleRow, received: float) -> None:
        self._candles[row.starlisting_id, row.time] = row
        self._candle_received.add(received)
        if self.size > self.max_rows:
            self._shed()

    def add_funding(self, funding: FundingRateRow) -> None:
        self._funding[funding.trading_pair_id, funding.time] = funding
        if self.size > self.max_rows:
            self._shed()

    def add_open_interest(self, interest: OpenInterestRow) -> None:
        self._interest[interest.trading_pair_id, interest.time] = interest
        if self.size > self.max_rows:
            self._shed()

    def add_trades(self, rows: list[TradeRow]) -> int:
        """Buffer a push's trades; returns how many were new to the buffer (the others
        repeat a trade it holds)."""
        trades = self._trades
        before = len(trades)
        for row in rows:
            trades[row.trading_pair_id, row.time, row.trade_id] = row
        added = len(trades) - before
        if self.size > self.max_rows:
            self._shed()
        return added

    def record_outages(self, exchange: str, outages: list[Outage]) -> None:
        """Outage rows of `exchange`'s series, written with the next flush; logged."""
        if not outages:
            return
        self.outages += outages
        first = outages[0]
        log.info(
            "event=outage_recorded exchange=%s series=%d start=%s end=%s seconds=%.3f reason=%r",
            exchange,
            len(outages),
            first.start_time.isoformat(),
            first.end_time.isoformat(),
            (first.end_time - first.start_time).total_seconds(),
            first.reason,
        )

    def take(self, now: datetime, everything: bool = False) -> Batch:
        """Everything due for a flush at `now`: all candles and trades, funding/OI of closed
        minutes (of every minute when `everything`), pending outages."""
        current = floor_minute(now)
        batch = Batch(
            outages=self.outages,
            candle_received=self._candle_received,
            covered_through=self._coverage(current, everything),
        )
        self.outages, self._candle_received = [], Arrivals()
        for table in ("candles", TRADES):
            batch.rows[table] = list(self._tables[table].values())
            self._tables[table].clear()
        for table in ("funding_rates", "open_interest"):
            rows = self._tables[table]
            due = [key for key in rows if everything or key[1] < current]
            batch.rows[table] = [rows.pop(key) for key in due]
        self._writing = batch
        return batch

    def _coverage(self, current: datetime, everything: bool) -> datetime | None:
        """How far a batch taken now covers: funding/OI of the open minute stay behind."""
        if self.received_through is None and self.gaps_since is None:
            return None  # nothing received, nothing inherited: nothing to say
        limits = [self.received_through, self.gaps_since, None if everything else current]
        return min(limit for limit in limits if limit is not None)

    def restore(self, batch: Batch) -> None:
        """Put back a batch whose write failed; rows updated since keep their newer state."""
        self.finished(batch)  # its rows are buffered again
        for table, rows in batch.rows.items():
            buffered = self._tables[table]
            for row in rows:
                buffered.setdefault(row_key(table, row), row)
        self.outages = batch.outages + self.outages
        self._candle_received.merge(batch.candle_received)
        if self.size > self.max_rows:
            self._shed()

    def _shed(self) -> None:
        """Drop the oldest rows down to `SHED_TO` of the bound; record them as outages."""
        excess = self.size - int(self.max_rows * SHED_TO)
        oldest = sorted(
            ((key[1], table, key) for table, rows in self._tables.items() for key in rows),
        )[:excess]
        spans: dict[tuple[str, int], list[datetime]] = defaultdict(list)
        for time, table, key in oldest:
            del self._tables[table][key]
            spans[table, key[0]].append(time)
        self.dropped += len(oldest)
        reason = f"buffer full (bound {self.max_rows} rows, database unreachable): rows dropped"
        self.outages += [
            Outage(table, series_id, min(times), max(times), reason)
            for (table, series_id), times in spans.items()
        ]
        log.warning(
            "event=rows_dropped rows=%d bound=%d series=%d oldest=%s newest=%s",
            len(oldest),
            self.max_rows,
            len(spans),
            oldest[0][0].isoformat(),
            oldest[-1][0].isoformat(),
        )
