"""The simulator in a process of its own, for the stream benchmark.

    python -m bench.stream.simulator [--synthetic N] [--speed X]

Every exchange with N synthetic coins (SYN001...) besides its real ones, no rate limits.
Prints one JSON line on stdout: `base_url` (every exchange's REST), `ws_url`
(Hyperliquid's WebSocket) and `ws_origins` (the other exchanges' WebSockets), then serves
until terminated. In its own process it takes no CPU from the collector under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from kirby_sim import SimulatorConfig, SimulatorServer


def config(synthetic: int, speed: float) -> SimulatorConfig:
    """The benchmark's simulator: `synthetic` coins on every venue, no rate limits."""
    return SimulatorConfig(
        speed=speed, extra_coins=synthetic, venue_extra_coins=synthetic, rate_limits=False
    )


async def main(synthetic: int, speed: float) -> None:
    async with SimulatorServer(config(synthetic, speed)) as sim:
        urls = {"base_url": sim.base_url, "ws_url": sim.ws_url, "ws_origins": sim.ws_origins}
        print(json.dumps(urls), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.synthetic, arguments.speed))
