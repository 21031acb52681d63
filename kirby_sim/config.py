"""Settings of one simulator instance (built by the CLI or a test, never from the environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from kirby_core.exchanges.registry import HYPERLIQUID
from kirby_sim.depth import DEFAULT_UPDATE_MS
from kirby_sim.faults import FaultSchedule


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port (tests); `kirby sim` defaults to 8765."""
    seed: int = 7
    """Same seed, same market data."""
    speed: float = 1.0
    """Simulated seconds per real second."""
    start: datetime | None = None
    """Simulated time at startup; None = the real time now."""
    extra_coins: int = 0
    """Synthetic Hyperliquid perps (SYN001...) added after the 28 real ones."""
    venue_extra_coins: int = 0
    """Synthetic coins (SYN001...) listed on every other venue too: Binance spot and USD-M,
    Bybit spot and linear, OKX spot and swap, Coinbase (load tests; off by default)."""
    quiet_probability: Mapping[str, float] = field(default_factory=dict)
    """Share of minutes without any trade, by coin (default: by liquidity tier)."""
    rate_limits: bool = True
    """Enforce REST weight limits and the WebSocket message rate (off for benchmarks)."""
    weight_per_minute: int = HYPERLIQUID.weights["perps"].per_minute
    """Hyperliquid REST weight allowed per IP per minute (default: the declared one)."""
    ws_idle_timeout: float = 60.0
    """Real seconds without a client message before the server closes a WebSocket."""
    ws_connections_per_ip: int = 100
    ws_subscriptions_per_ip: int = 1000
    ws_messages_per_minute: int = 2000
    ws_max_age_ms: int | None = None
    """Simulated ms after which a venue ends every WebSocket connection where the venue
    does so (Binance's 24 h); None keeps the venue's own. A soak shortens it to meet the
    scheduled disconnect within minutes."""
    context_interval_ms: int = 1000
    """Simulated ms between activeAssetCtx / l2Book / allMids pushes (+-10% jitter)."""
    depth_update_ms: int = DEFAULT_UPDATE_MS
    """Simulated ms between two states of an order book (Binance, Bybit, OKX, Coinbase):
    the book update rate; lower it for benchmarks."""
    schedule: FaultSchedule = field(default_factory=FaultSchedule)
    """Periodic faults for long runs."""
