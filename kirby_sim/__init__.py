"""An offline exchange: Hyperliquid (/info, /ws) and Binance (klines, exchangeInfo).

Protocol-faithful enough for the real hyperliquid-python-sdk and ccxt to work against it
unchanged, deterministic from a seed, running on a virtual clock, with fault injection.
Start one with `SimulatorServer` (async) or `run_simulator_in_thread` (sync clients), or
from the command line with `kirby sim`.
"""

from kirby_sim.clock import VirtualClock
from kirby_sim.config import SimulatorConfig
from kirby_sim.faults import MALFORMED_VARIANTS, FaultInjector, FaultSchedule
from kirby_sim.market import Market
from kirby_sim.server import SimulatorServer, run_simulator_in_thread

__all__ = [
    "MALFORMED_VARIANTS",
    "FaultInjector",
    "FaultSchedule",
    "Market",
    "SimulatorConfig",
    "SimulatorServer",
    "VirtualClock",
    "run_simulator_in_thread",
]
