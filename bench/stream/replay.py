"""A Hyperliquid WebSocket stand-in that replays recorded frames, for the stream benchmark.

    python -m bench.stream.replay FRAMES_FILE [--repeat N] [--rate MSGS_PER_S]

It speaks just enough of the protocol for a collector: the greeting, an acknowledgement per
subscription, pongs. Once the client has sent its first subscription and gone quiet for a
moment (all subscriptions sent), the recorded frames (a JSON list of text frames) are sent
`--repeat` times, as fast as the client reads them or at `--rate` messages per second.
Runs in its own process so the collector under test has a core to itself; prints its
WebSocket URL on the first line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.server import ServerConnection, serve

GREETING = "Websocket connection established."
SETTLE_SECONDS = 0.5
"""Quiet time after the last subscription before the replay starts."""


class Replay:
    def __init__(self, frames: list[str], repeat: int, rate: float | None) -> None:
        self.frames = frames
        self.repeat = repeat
        self.rate = rate

    async def handle(self, ws: ServerConnection) -> None:
        await ws.send(GREETING)
        last_subscription = asyncio.get_running_loop().create_future()
        sender = asyncio.create_task(self._send_when_subscribed(ws, last_subscription))
        try:
            async for text in ws:
                message = json.loads(text)
                if message.get("method") == "ping":
                    await ws.send('{"channel":"pong"}')
                    continue
                ack = {"channel": "subscriptionResponse", "data": message}
                await ws.send(json.dumps(ack, separators=(",", ":")))
                if not last_subscription.done():
                    last_subscription.set_result(None)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_when_subscribed(self, ws: ServerConnection, subscribed: asyncio.Future) -> None:
        await subscribed
        await asyncio.sleep(SETTLE_SECONDS)
        start = time.monotonic()
        sent = 0
        for _ in range(self.repeat):
            for frame in self.frames:
                await ws.send(frame)
                sent += 1
                if self.rate and sent % 100 == 0:
                    ahead = sent / self.rate - (time.monotonic() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)


async def main(frames: list[str], repeat: int, rate: float | None) -> None:
    replay = Replay(frames, repeat, rate)
    async with serve(replay.handle, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}/ws", flush=True)
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
