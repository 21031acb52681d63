"""`kirby sim`: run the offline exchange simulator until Ctrl-C (or SIGTERM).

Stands in for Hyperliquid, Binance, Bybit, OKX and Coinbase when there is no network:
point every exchange URL setting at the printed URLs (paths: kirby_sim/server.py). One
port serves all of them plus the admin endpoint (`/_sim/state`, `/_sim/faults`) through
which tests steer a simulator in another process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime

import click

from kirby_core.timeutil import ensure_utc
from kirby_sim import FaultSchedule, SimulatorConfig, SimulatorServer
from kirby_sim.depth import DEFAULT_UPDATE_MS

log = logging.getLogger("kirby.sim")

_SECONDS = click.FloatRange(min=0, min_open=True)


@click.command("sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port serving every endpoint (REST and WebSocket of Hyperliquid, Binance, Bybit, "
    "OKX and Coinbase, admin); 0 picks a free port.",
)
@click.option(
    "--seed",
    default=7,
    show_default=True,
    help="Seed of the simulated market: the same seed always serves the same data.",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=_SECONDS,
    help="Simulated seconds per real second; 60 runs a simulated minute every second.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="Simulated UTC time at startup, e.g. 2025-01-01T00:00 (default: now).",
)
@click.option(
    "--extra-coins",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Synthetic Hyperliquid perps (SYN001, SYN002, ...) added to the 28 real ones, "
    "for load tests.",
)
@click.option(
    "--no-rate-limits",
    is_flag=True,
    help="Do not enforce REST weight limits nor the WebSocket message rate (benchmarks).",
)
@click.option(
    "--weight-per-minute",
    default=1200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Hyperliquid REST weight allowed per client IP per minute.",
)
@click.option(
    "--ws-idle-timeout",
    default=60.0,
    show_default=True,
    type=_SECONDS,
    help="Real seconds without a client message after which a WebSocket is closed.",
)
@click.option(
    "--context-interval",
    default=1.0,
    show_default=True,
    type=_SECONDS,
    help="Simulated seconds between activeAssetCtx, l2Book and allMids pushes.",
)
@click.option(
    "--depth-update-ms",
    default=DEFAULT_UPDATE_MS,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="MS",
    help="Simulated ms between two states of an order book (Binance, Bybit, OKX, Coinbase): "
    "each venue's depth stream sends one diff a state; lower is a busier book.",
)
@click.option(
    "--drop-every",
    type=_SECONDS,
    metavar="SECONDS",
    help="Drop every WebSocket connection (no close frame) every SECONDS of real time.",
)
@click.option(
    "--stall-every",
    type=_SECONDS,
    metavar="SECONDS",
    help="Stall the WebSocket feed (connections stay open, nothing pushed) every SECONDS.",
)
@click.option(
    "--stall-for",
    default=10.0,
    show_default=True,
    type=_SECONDS,
    metavar="SECONDS",
    help="How long each scheduled stall lasts, in real seconds.",
)
@click.option(
    "--error-every",
    type=_SECONDS,
    metavar="SECONDS",
    help="Every SECONDS, make the next --error-count HTTP requests answer 503.",
)
@click.option(
    "--error-count",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="HTTP requests failed by each scheduled error burst.",
)
@click.option(
    "--malformed-every",
    type=_SECONDS,
    metavar="SECONDS",
    help="Every SECONDS, corrupt the next WebSocket data frame (bad JSON, non-numeric "
    "price, high below low, unknown coin, in turn).",
)
@click.option(
    "--book-gap-every",
    type=_SECONDS,
    metavar="SECONDS",
    help="Every SECONDS, leave one order-book update of some exchange out (Binance, Bybit, "
    "OKX or Coinbase): a sequence gap the collector must detect and resync.",
)
def sim(
    host: str,
    port: int,
    seed: int,
    speed: float,
    start: datetime | None,
    extra_coins: int,
    no_rate_limits: bool,
    weight_per_minute: int,
    ws_idle_timeout: float,
    context_interval: float,
    depth_update_ms: int,
    drop_every: float | None,
    stall_every: float | None,
    stall_for: float,
    error_every: float | None,
    error_count: int,
    malformed_every: float | None,
    book_gap_every: float | None,
) -> None:
    """Run the offline exchange simulator (Hyperliquid, Binance, Bybit, OKX, Coinbase)
    until Ctrl-C."""
    config = SimulatorConfig(
        host=host,
        port=port,
        seed=seed,
        speed=speed,
        start=ensure_utc(start) if start is not None else None,
        extra_coins=extra_coins,
        rate_limits=not no_rate_limits,
        weight_per_minute=weight_per_minute,
        ws_idle_timeout=ws_idle_timeout,
        context_interval_ms=round(context_interval * 1000),
        depth_update_ms=depth_update_ms,
        schedule=FaultSchedule(
            drop_every=drop_every,
            stall_every=stall_every,
            stall_for=stall_for,
            error_every=error_every,
            error_count=error_count,
            malformed_every=malformed_every,
            book_gap_every=book_gap_every,
        ),
    )
    # Under the `kirby` group logging is configured already and this does nothing; the
    # command run on its own (tests, `python -c`) still shows its URLs line.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(_serve(config))


async def _serve(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with SimulatorServer(config) as server:
        base = server.base_url
        ws_host = server.ws_url.removesuffix("/ws")
        log.info(
            "event=simulator_started hyperliquid_rest=%s hyperliquid_ws=%s binance_spot=%s "
            "binance_futures=%s binance_ws_spot=%s/stream binance_ws_usdm=%s/fstream/ws "
            "bybit_rest=%s bybit_ws=%s/v5/public/{spot,linear} okx_rest=%s okx_ws=%s/ws/v5 "
            "coinbase_rest=%s coinbase_ws=%s/advanced-trade-ws admin=%s/_sim/state "
            "seed=%d speed=%s simulated_now=%s",
            base,
            server.ws_url,
            base,
            base,
            ws_host,
            ws_host,
            base,
            ws_host,
            base,
            ws_host,
            base,
            ws_host,
            base,
            config.seed,
            config.speed,
            server.clock.now().isoformat(),
        )
        await stop.wait()
    log.info("event=simulator_stopped")
