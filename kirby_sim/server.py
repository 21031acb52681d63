"""The simulator as a server: one aiohttp app on one port, and two ways to run it.

One port serves every base URL Kirby needs:
    Hyperliquid REST   POST {base_url}/info          (SDK base_url, ccxt urls['api'])
    Hyperliquid WS     {ws_url} = ws://host:port/ws
    Binance            GET  {base_url}/api/v3/..., /fapi/v1/..., /dapi/v1/..., /futures/data/...
    Binance WS         spot ws://host:port/stream (ccxt urls['api']['ws']['spot']), /ws/<stream>
                       USD-M ws://host:port/fstream/ws    (ccxt ['linear'], which dials
                       /fstream/public/ws/<n> and /fstream/market/ws/<n>), /fstream/stream
    Bybit REST         GET  {base_url}/v5/market/...
    Bybit WS           ws://host:port/v5/public/spot, /v5/public/linear
    OKX REST           GET  {base_url}/api/v5/...            (ccxt urls['api']['rest'])
    OKX WS             ws://host:port/ws/v5/public, /ws/v5/business  (ccxt: .../ws/v5)
    Coinbase REST      GET  {base_url}/api/v3/brokerage/..., /v2/...  (ccxt urls['api']['rest'])
    Coinbase WS        ws://host:port/advanced-trade-ws               (ccxt urls['api']['ws'])
    admin              {base_url}/_sim/...           (see `admin`)

`SimulatorServer` is an async context manager for asyncio tests (port 0 by default);
`run_simulator_in_thread` runs one in a background thread with its own event loop, for
synchronous clients (hyperliquid-python-sdk, ccxt) that would otherwise block the loop.
Injected HTTP faults apply to every exchange path, not to WebSocket paths or /_sim; an
injected 429 is answered as each exchange limits (Binance 429 -1003, Bybit 403, OKX 429
code 50011, Coinbase 429). A client that ignores Binance's real 429s is banned with 418
(`binance_bans`). Dropping connections drops every exchange's WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any

from aiohttp import web

from kirby_sim import (
    binance,
    binance_ws,
    bybit,
    bybit_ws,
    coinbase,
    coinbase_ws,
    hyperliquid,
    okx,
    okx_ws,
)
from kirby_sim.admin import PREFIX, admin_routes
from kirby_sim.binance import Binance
from kirby_sim.binance_bans import BinanceBans
from kirby_sim.binance_depth import BinanceDepth
from kirby_sim.binance_futures import BinanceFutures
from kirby_sim.binance_ws import BinanceStream
from kirby_sim.bybit import Bybit
from kirby_sim.bybit_depth import BybitDepth
from kirby_sim.bybit_ws import BybitStream
from kirby_sim.clock import VirtualClock
from kirby_sim.coinbase import Coinbase
from kirby_sim.coinbase_depth import CoinbaseDepth
from kirby_sim.coinbase_ws import CoinbaseStream
from kirby_sim.config import SimulatorConfig
from kirby_sim.faults import FaultInjector, run_schedule
from kirby_sim.hyperliquid import HyperliquidInfo
from kirby_sim.hyperliquid_feed import HyperliquidFeed
from kirby_sim.hyperliquid_ws import HyperliquidStream, StreamLimits
from kirby_sim.market import Market
from kirby_sim.okx import Okx
from kirby_sim.okx_depth import OkxDepth
from kirby_sim.okx_ws import OkxStream
from kirby_sim.ratelimit import WeightLimiter
from kirby_sim.venue_ws import VenueSocket, routes_for

_BINANCE_PREFIXES = ("/api/", "/fapi/", "/dapi/", "/futures/data/")
RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ws_origins(base: str) -> dict[str, str]:
    """`Settings.ws_origins` pointing every exchange's WebSocket (but Hyperliquid's) at a
    simulator whose WebSocket base is `base` (ws://host:port, or a proxy in front of it)."""
    return {
        "wss://stream.binance.com:9443": base,
        "wss://fstream.binance.com": f"{base}/fstream",
        "wss://stream.bybit.com": base,
        "wss://ws.okx.com:8443": base,
        "wss://advanced-trade-ws.coinbase.com": f"{base}/advanced-trade-ws",
    }


class SimulatorServer:
    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        rate_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`rate_clock`: the real time REST weight limits count in (a test may share a fake
        one with the client under test)."""
        self.config = config = config or SimulatorConfig()
        self._rate_clock = rate_clock
        self.clock = VirtualClock(config.start, config.speed)
        self.faults = FaultInjector()
        self.market = Market(
            config.seed,
            extra_coins=config.extra_coins,
            venue_extra_coins=config.venue_extra_coins,
            quiet_probability=config.quiet_probability,
            depth_update_ms=config.depth_update_ms,
        )
        self.stream = HyperliquidStream(
            self.market,
            self.faults,
            StreamLimits(
                idle_timeout=config.ws_idle_timeout,
                connections_per_ip=config.ws_connections_per_ip,
                subscriptions_per_ip=config.ws_subscriptions_per_ip,
                messages_per_minute=config.ws_messages_per_minute if config.rate_limits else None,
            ),
        )
        self.feed = HyperliquidFeed(
            self.market, self.clock, self.stream, context_interval_ms=config.context_interval_ms
        )
        self.sockets: dict[tuple[str, ...], VenueSocket] = {
            tuple(bybit_ws.PATHS): BybitStream(
                self.market, self.clock, self.faults, config.rate_limits
            ),
            okx_ws.PATHS: OkxStream(self.market, self.clock, self.faults, config.rate_limits),
            coinbase_ws.PATHS: CoinbaseStream(
                self.market, self.clock, self.faults, config.rate_limits
            ),
            binance_ws.SPOT_PATHS: BinanceStream(
                self.market, self.clock, self.faults, config.rate_limits, futures=False
            ),
            binance_ws.FUTURES_PATHS: BinanceStream(
                self.market, self.clock, self.faults, config.rate_limits, futures=True
            ),
        }
        if config.ws_max_age_ms is not None:
            for socket in self.sockets.values():
                if socket.max_age_ms is not None:
                    socket.max_age_ms = config.ws_max_age_ms
        self.port: int | None = None
        self.http_requests = 0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._forget_drop_listener: Callable[[], None] | None = None

    @property
    def base_url(self) -> str:
        """http://host:port: the Hyperliquid REST base and the Binance host."""
        if self.port is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/ws"

    @property
    def ws_origins(self) -> dict[str, str]:
        """`Settings.ws_origins` pointing every exchange's WebSocket (but Hyperliquid's, see
        `ws_url`) at this simulator."""
        return ws_origins(f"ws://{self.config.host}:{self.port}")

    async def start(self) -> None:
        config = self.config
        limiter = WeightLimiter(
            config.weight_per_minute if config.rate_limits else None, self._rate_clock
        )
        info = HyperliquidInfo(self.market, self.clock, self.faults, limiter)
        exchange = Binance(
            self.market, self.clock, self.faults, config.rate_limits, self._rate_clock
        )
        bybit_rest = Bybit(self.market, self.clock, config.rate_limits)
        coinbase_rest = Coinbase(self.market, self.clock, config.rate_limits)
        others = (okx.PREFIX, coinbase.PREFIX)
        bans = BinanceBans(_BINANCE_PREFIXES, others).middleware(self.clock.now_ms)
        app = web.Application(middlewares=[self._inject_http_faults, bans])
        app.add_routes(
            [
                web.post("/info", info.handle),
                web.get("/ws", self.stream.handle),
                *exchange.routes(),
                *BinanceFutures(self.market, exchange).routes(),
                *BinanceDepth(self.market, exchange).routes(),
                *bybit_rest.routes(),
                *BybitDepth(self.market, bybit_rest).routes(),
                *Okx(self.market, self.clock, config.rate_limits).routes(),
                *OkxDepth(self.market, self.clock, config.rate_limits).routes(),
                *coinbase_rest.routes(),
                *CoinbaseDepth(self.market, coinbase_rest).routes(),
                *(
                    route
                    for paths, socket in self.sockets.items()
                    for route in routes_for(socket, paths)
                ),
                *admin_routes(self.faults, self.state),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.host, config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        loop = asyncio.get_running_loop()

        def drop_all() -> None:
            loop.call_soon_threadsafe(self.stream.drop_all)
            for socket in self.sockets.values():
                loop.call_soon_threadsafe(socket.drop_all)

        self._forget_drop_listener = self.faults.on_drop(drop_all)
        self._tasks = [
            asyncio.create_task(self.feed.run(), name="simulator-feed"),
            asyncio.create_task(
                run_schedule(config.schedule, self.faults), name="simulator-faults"
            ),
        ]

    async def stop(self) -> None:
        if self._forget_drop_listener is not None:
            self._forget_drop_listener()
            self._forget_drop_listener = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.stream.close_all()
        for socket in self.sockets.values():
            await socket.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def state(self) -> dict[str, Any]:
        connections = list(self.stream.connections)
        sessions = [session for socket in self.sockets.values() for session in socket.sessions]
        return {
            "now_ms": self.clock.now_ms(),
            "now": self.clock.now().isoformat(),
            "speed": self.clock.speed,
            "seed": self.market.seed,
            "base_url": self.base_url,
            "ws_url": self.ws_url,
            "connections": len(connections) + len(sessions),
            "subscriptions": sum(len(c.subscriptions) for c in connections)
            + sum(len(s.subscriptions) for s in sessions),
            "http_requests": self.http_requests,
            "ws_pushes": self.feed.pushed + sum(s.pushed for s in self.sockets.values()),
            "faults": self.faults.snapshot(),
        }

    @web.middleware
    async def _inject_http_faults(
        self, request: web.Request, handler: RequestHandler
    ) -> web.StreamResponse:
        path = request.path
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if path.startswith(PREFIX) or upgrade:
            return await handler(request)
        self.http_requests += 1
        fault = self.faults.take_http_error()
        if fault is None:
            return await handler(request)
        retry_after = fault.retry_after or 1.0
        if path.startswith((coinbase.PREFIX, coinbase.V2_PREFIX)):  # before Binance's /api/
            if fault.status == 429:
                return coinbase.rate_limited()
            return coinbase.server_error(fault.status)
        if path.startswith(okx.PREFIX):  # before Binance's /api/
            return okx.rate_limited() if fault.status == 429 else okx.server_error(fault.status)
        if path.startswith(_BINANCE_PREFIXES):
            if fault.status == 429:
                return binance.rate_limited(request.remote or "unknown", binance.SPOT, retry_after)
            return binance.server_error(fault.status)
        if path.startswith(bybit.PREFIX):
            return bybit.rate_limited() if fault.status == 429 else bybit.server_error(fault.status)
        if fault.status == 429:
            return hyperliquid.rate_limited(retry_after)
        return hyperliquid.server_error(fault.status)


@contextlib.contextmanager
def run_simulator_in_thread(config: SimulatorConfig | None = None) -> Iterator[SimulatorServer]:
    """Run a simulator in a background thread until the block exits."""
    server = SimulatorServer(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            loop.run_until_complete(server.stop())
            return
        finally:
            started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(server.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())

    thread = threading.Thread(target=serve, name="kirby-simulator")
    thread.start()
    started.wait()
    try:
        if failure:
            raise failure[0]
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
