"""Repair of today's outages: the window an outage covered refetched once it has ended.

`gap_repair` backfills whole past days (partitions); an outage of the day under way would
wait for midnight. Here, once an outage row of today has ended `repair_settle_seconds` ago
and the exchange serves all of its window (`ready_at`: the last candle closed, the last
open-interest point published), `live_gap_repair` requests a `live_repair` run (one per
exchange and tick, tagged with its `kirby/exchange` pool like every backfill) that
refetches exactly the outage's window of today through the backfill assets' own functions
(`backfills.fetch_all`, `trade_backfills.fetch_trade_days`, with a `window`): candles,
settled funding, open interest at its declared history interval, trades where the exchange
serves them. Each window's report is merged into the day's `backfill_reports` row, and the
outage is then classified slot by slot (`kirby_core.db.coverage.classify_outage`): present,
unavailable at source (the minute rows of funding and open interest, which no exchange
serves per minute; trades of an exchange without history), no trades, or still
outage/unexplained. An outage is closed when none of its slots is left in the last two.

The part of an outage before today is `gap_repair`'s (whole days). Decisions are plain data
(`live_repairs`), tested without a daemon; the cursor is JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from kirby_core.backfill import RepairWindow
from kirby_core.db import coverage
from kirby_core.db.connection import connect
from kirby_core.exchanges.registry import open_interest_interval
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_time, interval_delta
from kirby_pipelines import backfills, trade_backfills
from kirby_pipelines.automation import OUTAGE_ASSETS, UNKNOWN_SERIES, RecordedOutage
from kirby_pipelines.partitions import parse_series
from kirby_pipelines.runs import EXCHANGE_TAG, PRIORITY_TAG, REASON_TAG, exchange_of

JOB = "live_repair"
OP = "repair_outage_windows"
REASON = "live gap repair"


class OutageWindow(dg.Config):
    """One outage's window of today, as a `live_repair` run takes it."""

    outage_id: int
    dataset: str
    series: str
    """Partition key of the series (starlisting or trading pair)."""
    series_id: int
    start: str
    """ISO time: the window's start (the outage's first slot, or today's midnight)."""
    end: str


class LiveRepairConfig(dg.Config):
    windows: list[OutageWindow]


@dataclass
class LiveRepairCursor:
    outage_id: int = 0
    """Highest outage id read."""
    waiting: list[dict] = field(default_factory=list)
    """Outages of today read but not settled yet (`RecordedOutage` fields, ISO times)."""

    @classmethod
    def parse(cls, cursor: str | None) -> LiveRepairCursor:
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        return cls(raw.get("outage_id", 0), raw.get("waiting", []))

    def dump(self) -> str:
        return json.dumps({"outage_id": self.outage_id, "waiting": self.waiting})

    def waiting_outages(self) -> list[RecordedOutage]:
        return [
            RecordedOutage(
                o["id"],
                o["dataset"],
                o["series"],
                datetime.fromisoformat(o["start_time"]),
                datetime.fromisoformat(o["end_time"]),
                o["series_id"],
            )
            for o in self.waiting
        ]


def _as_json(outage: RecordedOutage) -> dict:
    raw = asdict(outage)
    raw["start_time"] = outage.start_time.isoformat()
    raw["end_time"] = outage.end_time.isoformat()
    return raw


def window_of(outage: RecordedOutage, now: datetime) -> RepairWindow | None:
    """The part of today `outage` covered, on its series' grid (a candle interval, or a
    minute); None when it ended before today."""
    midnight = floor_time(now, "1d")
    if outage.end_time <= midnight:
        return None
    step = getattr(parse_series(outage.series), "interval", "1m")
    start = max(floor_time(outage.start_time, step), midnight)
    end = floor_time(outage.end_time, step)
    if end < outage.end_time:
        end += interval_delta(step)
    return start, end


def ready_at(outage: RecordedOutage, window: RepairWindow, settle: timedelta) -> datetime:
    """When the exchange serves all of `window`: `settle` after the outage ended, once the
    window's last candle has closed (its end, on the candle grid), and for open interest
    once the history point holding its last minute is published (a point at T is served
    from T + the declared `open_interest_interval`)."""
    at = max(outage.end_time + settle, window[1])
    if outage.dataset == "open_interest":
        step = open_interest_interval(parse_series(outage.series).exchange)
        last_point = floor_time(window[1] - timedelta(microseconds=1), step)
        at = max(at, last_point + interval_delta(step))
    return at


def live_repairs(
    cursor: LiveRepairCursor,
    outages: Sequence[RecordedOutage],
    now: datetime,
    settle: timedelta,
) -> tuple[list[dg.RunRequest], LiveRepairCursor, list[str]]:
    """Requests for the windows of today's outages that ended `settle` ago (new ones and
    those the cursor waits on), the next cursor, and notes on what was left out."""
    notes: list[str] = []
    next_cursor = LiveRepairCursor(cursor.outage_id, [])
    windows: dict[str, list[OutageWindow]] = {}
    for outage in [*cursor.waiting_outages(), *outages]:
        next_cursor.outage_id = max(next_cursor.outage_id, outage.id)
        if outage.dataset not in OUTAGE_ASSETS:
            notes.append(f"outage {outage.id}: {outage.dataset} has no history to refetch")
            continue
        if outage.series.startswith(UNKNOWN_SERIES):
            notes.append(f"outage {outage.id}: series id {outage.series_id} is not in the catalog")
            continue
        window = window_of(outage, now)
        if window is None:
            continue  # whole past days: gap_repair's
        if ready_at(outage, window, settle) > now:
            next_cursor.waiting.append(_as_json(outage))
            continue
        windows.setdefault(exchange_of(outage.series), []).append(
            OutageWindow(
                outage_id=outage.id,
                dataset=outage.dataset,
                series=outage.series,
                series_id=outage.series_id,
                start=window[0].isoformat(),
                end=window[1].isoformat(),
            )
        )
    requests = []
    for exchange, items in sorted(windows.items()):
        ids = sorted(w.outage_id for w in items)
        requests.append(
            dg.RunRequest(
                run_key=f"live-repair:{exchange}:{ids[0]}-{ids[-1]}:{len(ids)}",
                job_name=JOB,
                run_config=dg.RunConfig(ops={OP: LiveRepairConfig(windows=items)}),
                tags={EXCHANGE_TAG: exchange, REASON_TAG: REASON, PRIORITY_TAG: "1"},
            )
        )
    return requests, next_cursor, notes


@dataclass(frozen=True)
class Repaired:
    window: OutageWindow
    fetched: int
    """Rows (trades: rows of trades) the exchange served for the window."""
    classes: coverage.ClassifiedOutage


async def repair_windows(
    settings: Settings, url: str, windows: Sequence[OutageWindow], now: datetime
) -> list[Repaired]:
    """Refetch, write and record each window, then classify its outage."""
    done = []
    for item in windows:
        span = (datetime.fromisoformat(item.start), datetime.fromisoformat(item.end))
        plan = {item.series: [span[0].date()]}
        asset = OUTAGE_ASSETS[item.dataset]
        quiet = lambda _series: lambda _report: None  # noqa: E731
        if asset == "trades":
            reports = await trade_backfills.fetch_trade_days(settings, url, plan, now, quiet, span)
            fetched = sum(r.fetched for r in reports[item.series])
        else:
            target = backfills.BACKFILLED[asset]
            results = await backfills.fetch_all(settings, url, target, plan, now, quiet, span)
            fetched = sum(r.fetched for r in results[item.series].days)
        conn = await connect(url)
        try:
            interval = getattr(parse_series(item.series), "interval", "1m")
            classes = await coverage.classify_outage(
                conn, item.outage_id, item.dataset, item.series_id, interval
            )
        finally:
            await conn.close()
        done.append(Repaired(item, fetched, classes))
    return done


def report_repairs(
    context: dg.OpExecutionContext, settings: Settings, url: str, config: LiveRepairConfig
) -> dg.Output[None]:
    repaired = asyncio.run(repair_windows(settings, url, config.windows, datetime.now(UTC)))
    lines = [
        "| outage | dataset | series | window | fetched | present | unavailable | no trades"
        " | open |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in repaired:
        c, w = r.classes, r.window
        still = c.collector_outage + c.unexplained
        lines.append(
            f"| {w.outage_id} | {w.dataset} | {w.series} | {w.start[11:16]}-{w.end[11:16]} |"
            f" {r.fetched} | {c.present} | {c.unavailable_at_source} | {c.no_trades} | {still} |"
        )
        message = (
            f"outage {w.outage_id} {w.dataset} {w.series} {w.start}..{w.end}: {r.fetched} fetched;"
            f" slots present {c.present}, unavailable at source {c.unavailable_at_source},"
            f" no trades {c.no_trades}, still missing {still}"
        )
        (context.log.info if c.closed else context.log.warning)(message)
    return dg.Output(
        None,
        metadata={
            "outages": len(repaired),
            "outages_closed": sum(1 for r in repaired if r.classes.closed),
            "outages_open": sum(1 for r in repaired if not r.classes.closed),
            "rows_fetched": sum(r.fetched for r in repaired),
            "windows": dg.MetadataValue.md("\n".join(lines)),
        },
    )
