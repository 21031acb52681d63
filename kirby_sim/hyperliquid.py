"""Hyperliquid `POST /info`, as the SDK and ccxt call it.

Served request types: meta (also with "dex": ""), spotMeta, metaAndAssetCtxs,
spotMetaAndAssetCtxs, perpDexs, allMids, l2Book, candleSnapshot and fundingHistory.
Errors take the real API's shapes: a body that is not the expected JSON answers 422
text/plain "Failed to deserialize the JSON body into the target type: ..." (also for
unknown request types and intervals), a wrong Content-Type 415, an unknown coin 500 with a
JSON `null` body, an exceeded weight limit 429.

candleSnapshot returns ascending candles from the one containing startTime to the one
containing endTime, only within the most recent 5000 candles of the interval plus the
forming one; minutes without trades have no candle. fundingHistory returns at most 500
settled rows with time in [startTime, endTime] (endTime defaults to now).

Page sizes and weights are the ones Kirby's exchange registry declares
(`kirby_core.exchanges.registry.HYPERLIQUID` and the `hyperliquid` module it references):
an /info request weighs `INFO_WEIGHT` up front, then one more per `CANDLES_PER_WEIGHT`
candles or `FUNDING_ROWS_PER_WEIGHT` funding rows returned; allMids and l2Book, which Kirby
does not send, weigh 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kirby_core.exchanges import hyperliquid as declared
from kirby_core.exchanges.registry import HYPERLIQUID as DECLARATION
from kirby_sim import hyperliquid_payloads as payloads
from kirby_sim.clock import VirtualClock
from kirby_sim.faults import FaultInjector
from kirby_sim.intervals import HYPERLIQUID_INTERVALS, floor_open, shift_open
from kirby_sim.malform import malformed_text
from kirby_sim.market import Market
from kirby_sim.ratelimit import WeightLimiter
from kirby_sim.universe import HYPERLIQUID_VENUE
from kirby_sim.wire import encode

MAX_CANDLES = DECLARATION.candle_page_rows["perps"]
DEFAULT_WEIGHT = DECLARATION.weights["perps"].request
LIGHT_WEIGHTS = {"allMids": 2, "l2Book": 2}
_EMPTY_SPOT_META: dict[str, list[Any]] = {"universe": [], "tokens": []}


class BadBody(Exception):
    """The body does not deserialize into a request (HTTP 422)."""


class UnknownAsset(Exception):
    """A well-formed request naming a coin or dex that does not exist (HTTP 500)."""


@dataclass(frozen=True)
class InfoResult:
    payload: Any
    item_weight: int = 0
    data_kind: str | None = None
    """Payload kind for the `malformed` HTTP fault; None = never corrupted."""


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _json(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def rate_limited(retry_after: float) -> web.Response:
    return _json(429, "null", {"Retry-After": str(max(1, math.ceil(retry_after)))})


def server_error(status: int) -> web.Response:
    return _json(status, "null")


def _field(obj: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise BadBody(f"missing field `{name}`")
        return None
    valid = isinstance(value, kind) and not isinstance(value, bool)
    if not valid or (kind is int and value < 0):
        expected = "u64" if kind is int else "a string"
        raise BadBody(f"{name}: invalid type: {json.dumps(value)}, expected {expected}")
    return value


def _check_dex(body: dict[str, Any]) -> None:
    if _field(body, "dex", str, required=False) not in (None, ""):
        raise UnknownAsset


class HyperliquidInfo:
    def __init__(
        self, market: Market, clock: VirtualClock, faults: FaultInjector, limiter: WeightLimiter
    ) -> None:
        self.market = market
        self.clock = clock
        self.faults = faults
        self.limiter = limiter
        self._handlers: dict[str, Callable[[dict[str, Any], int], InfoResult]] = {
            "meta": self._meta,
            "spotMeta": lambda body, now: InfoResult(_EMPTY_SPOT_META),
            "metaAndAssetCtxs": self._meta_and_asset_ctxs,
            "spotMetaAndAssetCtxs": lambda body, now: InfoResult([_EMPTY_SPOT_META, []]),
            "perpDexs": lambda body, now: InfoResult([None]),
            "allMids": self._all_mids,
            "l2Book": self._l2_book,
            "candleSnapshot": self._candle_snapshot,
            "fundingHistory": self._funding_history,
        }

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _text(415, "Expected request with `Content-Type: application/json`")
        raw = await request.read()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise BadBody("invalid type: expected internally tagged enum")
            kind = _field(body, "type", str)
            handler = self._handlers.get(kind)
            if handler is None:
                expected = ", ".join(f"`{name}`" for name in self._handlers)
                raise BadBody(f"unknown variant `{kind}`, expected one of {expected}")
        except (ValueError, BadBody) as exc:
            return _text(422, f"Failed to deserialize the JSON body into the target type: {exc}")
        client = request.remote or "unknown"
        retry_after = self.limiter.acquire(client, LIGHT_WEIGHTS.get(kind, DEFAULT_WEIGHT))
        if retry_after is not None:
            return rate_limited(retry_after)
        try:
            result = handler(body, self.clock.now_ms())
        except BadBody as exc:
            return _text(422, f"Failed to deserialize the JSON body into the target type: {exc}")
        except UnknownAsset:
            return server_error(500)
        self.limiter.charge(client, result.item_weight)
        text = None
        if result.data_kind is not None:
            text = malformed_text(self.faults, "http", result.data_kind, result.payload, encode)
        return _json(200, text if text is not None else encode(result.payload))

    def _meta(self, body: dict[str, Any], now_ms: int) -> InfoResult:
        _check_dex(body)
        return InfoResult(payloads.meta(self.market))

    def _meta_and_asset_ctxs(self, body: dict[str, Any], now_ms: int) -> InfoResult:
        _check_dex(body)
        return InfoResult(
            [payloads.meta(self.market), payloads.asset_contexts(self.market, now_ms)]
        )

    def _all_mids(self, body: dict[str, Any], now_ms: int) -> InfoResult:
        _check_dex(body)
        return InfoResult(payloads.all_mids(self.market, now_ms))

    def _l2_book(self, body: dict[str, Any], now_ms: int) -> InfoResult:
        derivatives = self.market.derivatives(_field(body, "coin", str))
        if derivatives is None:
            raise UnknownAsset
        return InfoResult(derivatives.l2_book(now_ms))

    def _candle_snapshot(self, body: dict[str, Any], now_ms: int) -> InfoResult:
        request = body.get("req")
        if not isinstance(request, dict):
            raise BadBody("missing field `req`")
        coin = _field(request, "coin", str)
        interval = _field(request, "interval", str)
        if interval not in HYPERLIQUID_INTERVALS:
            expected = ", ".join(f"`{name}`" for name in HYPERLIQUID_INTERVALS)
            raise BadBody(f"req.interval: unknown variant `{interval}`, expected one of {expected}")
        start_ms = _field(request, "startTime", int)
        end_ms = _field(request, "endTime", int, required=False)
        book = self.market.book(HYPERLIQUID_VENUE, coin)
        if book is None:
            raise UnknownAsset
        end_ms = now_ms if end_ms is None else min(end_ms, now_ms)
        oldest = shift_open(interval, floor_open(interval, now_ms), -MAX_CANDLES)
        first_open = max(floor_open(interval, start_ms), oldest)
        last_open = floor_open(interval, end_ms)
        bars = book.bars(interval, first_open, last_open, now_ms) if start_ms <= end_ms else []
        rows = [payloads.candle(book.instrument, interval, bar) for bar in bars if bar.traded]
        return InfoResult(rows, len(rows) // declared.CANDLES_PER_WEIGHT, "candles")

    def _funding_history(self, body: dict[str, Any], now_ms: int) -> InfoResult:
        derivatives = self.market.derivatives(_field(body, "coin", str))
        start_ms = _field(body, "startTime", int)
        end_ms = _field(body, "endTime", int, required=False)
        if derivatives is None:
            raise UnknownAsset
        end_ms = now_ms if end_ms is None else min(end_ms, now_ms)
        rows = derivatives.funding_rows(start_ms, end_ms)
        return InfoResult(rows, len(rows) // declared.FUNDING_ROWS_PER_WEIGHT, "funding")
