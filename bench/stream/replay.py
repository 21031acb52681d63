"""Exchange WebSocket stand-ins that replay recorded frames, for the stream benchmark.

    python -m bench.stream.replay FRAMES_FILE [--repeat N] [--rate MSGS_PER_S]

FRAMES_FILE is a JSON object: URL path (as the simulator serves it, e.g. `/ws` for
Hyperliquid, `/v5/public/linear` for Bybit) -> the data frames recorded there. A client
connecting on a path gets that path's frames: once it has sent its first message and gone
quiet for a moment (all subscriptions sent), they are sent `--repeat` times, as fast as the
client reads them or, with `--rate`, at the path's share of `--rate` messages per second
(the frames are recorded side by side, so each path keeps its share of the firehose). The
replay answers nothing: no greeting, no acknowledgement, no pong (a collector's feeds then
stay "starting", which changes nothing in how their frames are parsed, buffered and
flushed). A path with no frames stays silent. Runs in its own process so the collector
under test has a core to itself; prints its base URL (ws://host:port) on the first line of
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SETTLE_SECONDS = 0.5
"""Quiet time after the client's latest message before the replay starts."""


class Replay:
    def __init__(
        self, frames: Mapping[str, list[str]], repeat: int, rate: float | None = None
    ) -> None:
        self.frames = frames
        self.repeat = repeat
        total = sum(len(sent) for sent in frames.values())
        self.rates = {
            path: rate * len(sent) / total if rate and total else None
            for path, sent in frames.items()
        }

    async def handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        frames = self.frames.get(path, [])
        heard = asyncio.Event()
        sender = asyncio.create_task(self._send_when_subscribed(ws, frames, path, heard))
        try:
            async for _ in ws:
                heard.set()
        except ConnectionClosed:
            pass  # the client went away: the replay to it ends
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_when_subscribed(
        self, ws: ServerConnection, frames: list[str], path: str, heard: asyncio.Event
    ) -> None:
        await heard.wait()
        while True:  # quiet for SETTLE_SECONDS: every subscription is sent
            heard.clear()
            try:
                await asyncio.wait_for(heard.wait(), SETTLE_SECONDS)
            except TimeoutError:
                break
        rate = self.rates.get(path)
        start = time.monotonic()
        sent = 0
        for _ in range(self.repeat):
            for frame in frames:
                await ws.send(frame)
                sent += 1
                if rate and sent % 100 == 0:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)


async def main(frames: Mapping[str, list[str]], repeat: int, rate: float | None) -> None:
    replay = Replay(frames, repeat, rate)
    # no keepalive pings: a collector that cannot keep up stops reading (and answering)
    async with serve(replay.handle, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames_file")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--rate", type=float, default=None)
    arguments = parser.parse_args()
    with open(arguments.frames_file) as source:
        recorded = json.load(source)
    asyncio.run(main(recorded, arguments.repeat, arguments.rate))
