"""What an exchange's WebSocket does not carry, polled from its REST API once a minute.

A `Poller` serves one `PollPlan` (one exchange, one dataset) with the REST client the
exchange declares: `open_interest_now` for open interest (Binance streams none), its
`history_client` for candle intervals its WebSocket lacks (Coinbase streams 5m candles
only). `stream_poll_delay_seconds` after each minute closes on the data clock, it fetches
every target: for candles the period just closed and the one forming (both as the exchange
publishes them), for open interest the current value, stamped with the exchange's minute.
Rows land in the shared buffers like the WebSocket's. A failed poll (the exchange down,
429s past the client's retries, a malformed answer) opens a gap for the targets it missed;
the next good answer closes it into outage rows, exactly like a dropped connection. The
exchange's state says "polled" in its coverage: these series are REST-sampled, not pushed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from kirby_core.errors import InvalidRequest, KirbyError
from kirby_core.exchanges.registry import EXCHANGES
from kirby_core.models import CandleRow, OpenInterestRow
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS, floor_minute, floor_time
from kirby_stream.backoff import pause
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import PollPlan, PollTarget
from kirby_stream.outages import FeedGaps, Outage
from kirby_stream.stats import FeedStats, Stats
from kirby_stream.succession import Predecessor

log = logging.getLogger(__name__)

POLL_TICK_SECONDS = 0.5
"""How often the poller looks at the data clock for the next minute's close."""


class Poller:
    def __init__(
        self,
        settings: Settings,
        buffers: Buffers,
        stats: Stats,
        plan: PollPlan,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.buffers = buffers
        self.stats = stats
        self.feed_stats: FeedStats = stats.feed(plan.exchange)
        self.plan = plan
        self.key = plan.key
        self.clock = clock
        self.gaps = FeedGaps()
        self.state: Literal["starting", "running", "degraded"] = "starting"
        self.problem: str | None = None
        self.polls = 0

    def replace_plan(self, plan: PollPlan) -> None:
        removed = self.plan.units - plan.units
        self._record(self.gaps.close(removed, self.clock(), self.plan, "no longer collected"))
        self.plan = plan

    async def run(self, stop: asyncio.Event) -> None:
        declared = EXCHANGES[self.plan.exchange]
        opener: Callable[[Settings], Any] | None = (
            declared.open_interest_now
            if self.plan.dataset == "open_interest"
            else declared.history_client
        )
        if opener is None:
            raise InvalidRequest(f"{declared.name} declares no REST client for {self.plan.dataset}")
        delay = timedelta(seconds=self.settings.stream_poll_delay_seconds)
        async with opener(self.settings) as client:
            while not stop.is_set():  # the first poll at once, then after each minute's close
                await self._poll(client)
                due = floor_minute(self.clock() - delay) + timedelta(minutes=1) + delay
                while self.clock() < due:
                    if await pause(stop, POLL_TICK_SECONDS):
                        break
        self.close_gaps(self.clock())

    async def _poll(self, client: Any) -> None:
        now = self.clock()
        targets = self.plan.targets
        answers = await asyncio.gather(
            *(self._fetch(client, target, now) for target in targets), return_exceptions=True
        )
        missed: list[tuple[PollTarget, str]] = []
        for target, answer in zip(targets, answers, strict=True):
            if isinstance(answer, KirbyError):  # down, refused, malformed, unknown symbol
                missed.append((target, str(answer)[:300]))
                continue
            if isinstance(answer, BaseException):
                raise answer
            received_at = self.clock()
            self._record(self.gaps.saw_data(target.unit, received_at, self.plan))
            self.feed_stats.messages_received += 1
            self.feed_stats.last_message = time.monotonic()
        self.polls += 1
        if missed:
            reason = f"poll failed: {missed[0][1]}"
            self.gaps.lost((target.unit for target, _ in missed), now, reason)
            self.state, self.problem = "degraded", reason
            log.warning(
                "event=poll_failed exchange=%s dataset=%s targets=%d reason=%r",
                self.plan.exchange,
                self.plan.dataset,
                len(missed),
                reason,
            )
        else:
            self.state, self.problem = "running", None
            self.buffers.received[self.key] = now
        self.buffers.gaps[self.key] = self.gaps.since

    async def _fetch(self, client: Any, target: PollTarget, now: datetime) -> None:
        """Rows of `target` into the buffers; their message-to-row latency starts when the
        answer arrived (the request's spacing and retries are the exchange's, not Kirby's)."""
        pair = target.pair
        if target.interval is None:
            point = await client.fetch_open_interest_now(pair.coin, pair.quote)
            self.buffers.add_open_interest(OpenInterestRow(target.series_id, *point))
            return
        step = timedelta(seconds=INTERVAL_SECONDS[target.interval])
        start = floor_time(now, target.interval) - step
        candles = await client.fetch_candles(
            pair.coin, pair.quote, pair.market_type, target.interval, start, now
        )
        received = time.monotonic()
        for candle in candles:
            self.buffers.add_candle(CandleRow(target.series_id, *candle), received)

    def inherit(self, predecessors: list[Predecessor]) -> None:
        """Take over from collectors that ended: what they did not store is an outage."""
        for old in predecessors:
            units = self.plan.units
            self._record(self.gaps.inherit(units, old.covered_through, self.plan, old.reason))
        self.buffers.gaps[self.key] = self.gaps.since

    def close_gaps(self, at: datetime) -> None:
        self._record(self.gaps.close(self.gaps.open_coins, at, self.plan, "collector stopped"))
        self.buffers.gaps[self.key] = self.gaps.since

    def _record(self, outages: list[Outage]) -> None:
        self.buffers.record_outages(self.plan.exchange, outages)
        self.feed_stats.outages += len(outages)
