"""Book maintenance per exchange: depth messages/s through Kirby's parser + integrity
rules + L2 book on one core, against the engine's own limit on the same frames: Kirby's
typed decoder alone, and json.loads alone.

    python -m bench.books.run [--updates 20000] [--repeat 3] [--seed 1]

Frames: each exchange's documented depth frame (the shapes of `tests/books/frames.py`),
generated deterministically: a snapshot (Binance's REST depth of 1000 levels a side,
Bybit's orderbook.50, OKX's books of 400, Coinbase's level2 of 1000) and then `--updates`
deltas, each changing `CHANGES[exchange]` levels at exponentially distributed distances
from a fixed mid (a quarter of them deletes); Hyperliquid pushes its whole 20-level book
every time. One update = one depth message. Timed in CPU seconds of this process
(`time.process_time`: the machine is shared, so this is what one core does), best of
`--repeat`, in one thread:
(a) `<name>_wire.parse_depth` + `SeriesBook.feed` (sequence check + apply + crossed check)
of every frame; (b) the engine's
limit: `<name>_wire.DEPTH_DECODER` (the typed msgspec decoder parse_depth runs first)
alone on the same frames, which no parser of them can beat; (c) `json.loads` alone, the
floor of a consumer decoding to dicts. Target (issue 15): >= 50k updates/s on one core;
a miss where (b) is itself under 50k is the engine's limit. Figures only, never asserted;
the run checks that no gap was seen (the frames are in order) and that the top-N equals
the exact book rebuilt from the frames with Decimals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kirby_core.books import BookUpdate, CoinbaseConnection, SeriesBook, series_book
from kirby_core.exchanges import (
    binance_wire,
    bybit_wire,
    coinbase_wire,
    hyperliquid_wire,
    okx_wire,
)

AT = datetime(2025, 1, 6, 12, 12, 31, tzinfo=UTC)
MID = 97000
TICK = Decimal("0.1")
CHANGES = {"binance": 20, "bybit": 5, "okx": 5, "coinbase": 3, "hyperliquid": 40}
"""Levels a delta changes (Hyperliquid: the whole book, 20 a side)."""
SNAPSHOT_LEVELS = {"binance": 1000, "bybit": 50, "okx": 400, "coinbase": 1000, "hyperliquid": 20}


def _price(rng: random.Random, bid: bool) -> str:
    ticks = int(rng.expovariate(1 / 30)) + 1
    return str(MID - ticks * TICK if bid else MID + ticks * TICK)


def _size(rng: random.Random) -> str:
    return "0" if rng.random() < 0.25 else f"{rng.random() * 3:.4f}"


def _depth(rng: random.Random) -> str:
    return f"{0.001 + rng.random() * 3:.4f}"


def _changes(rng: random.Random, n: int) -> tuple[list[list[str]], list[list[str]]]:
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    for _ in range(n):
        bid = rng.random() < 0.5
        (bids if bid else asks).append([_price(rng, bid), _size(rng)])
    return bids, asks


def _ladder(n: int) -> tuple[list[list[str]], list[list[str]]]:
    bids = [[str(MID - (i + 1) * TICK), "1.5"] for i in range(n)]
    asks = [[str(MID + (i + 1) * TICK), "1.5"] for i in range(n)]
    return bids, asks


def binance_frames(rng: random.Random, updates: int) -> tuple[Any, list[str]]:
    bids, asks = _ladder(SNAPSHOT_LEVELS["binance"])
    snapshot = {"lastUpdateId": 1000, "bids": bids, "asks": asks}
    frames, u = [], 1000
    for _ in range(updates):
        b, a = _changes(rng, CHANGES["binance"])
        event = {
            "e": "depthUpdate",
            "E": 1736165581000 + u,
            "s": "BTCUSDT",
            "U": u + 1,
            "u": u + 3,
            "b": b,
            "a": a,
        }
        frames.append(json.dumps({"stream": "btcusdt@depth@100ms", "data": event}))
        u += 3
    return snapshot, frames


def bybit_frames(rng: random.Random, updates: int) -> tuple[Any, list[str]]:
    def frame(kind: str, u: int, b: list[list[str]], a: list[list[str]]) -> str:
        data = {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": 7961638724 + u}
        return json.dumps(
            {
                "topic": "orderbook.50.BTCUSDT",
                "type": kind,
                "ts": 1736165581000 + u,
                "data": data,
                "cts": 1736165580998,
            }
        )

    frames = [frame("snapshot", 100, *_ladder(SNAPSHOT_LEVELS["bybit"]))]
    frames += [frame("delta", 101 + i, *_changes(rng, CHANGES["bybit"])) for i in range(updates)]
    return None, frames


def okx_frames(rng: random.Random, updates: int) -> tuple[Any, list[str]]:
    def frame(action: str, prev: int, seq: int, b: list[list[str]], a: list[list[str]]) -> str:
        row = {
            "asks": [[*r, "0", "1"] for r in a],
            "bids": [[*r, "0", "1"] for r in b],
            "ts": str(1736165581000 + seq),
            "checksum": 0,
            "prevSeqId": prev,
            "seqId": seq,
        }
        arg = {"channel": "books", "instId": "BTC-USDT"}
        return json.dumps({"arg": arg, "action": action, "data": [row]})

    frames, seq = [frame("snapshot", -1, 1000, *_ladder(SNAPSHOT_LEVELS["okx"]))], 1000
    for _ in range(updates):
        step = rng.randint(1, 90)
        frames.append(frame("update", seq, seq + step, *_changes(rng, CHANGES["okx"])))
        seq += step
    return None, frames


def coinbase_frames(rng: random.Random, updates: int) -> tuple[Any, list[str]]:
    def frame(seq: int, kind: str, b: list[list[str]], a: list[list[str]]) -> str:
        rows = [("bid", r) for r in b] + [("offer", r) for r in a]
        event = {
            "type": kind,
            "product_id": "BTC-USD",
            "updates": [
                {
                    "side": side,
                    "event_time": "2025-01-06T12:12:30.1Z",
                    "price_level": p,
                    "new_quantity": q,
                }
                for side, (p, q) in rows
            ],
        }
        return json.dumps(
            {
                "channel": "l2_data",
                "client_id": "",
                "timestamp": "2025-01-06T12:12:30.123456789Z",
                "sequence_num": seq,
                "events": [event],
            }
        )

    frames = [frame(0, "snapshot", *_ladder(SNAPSHOT_LEVELS["coinbase"]))]
    frames += [frame(1 + i, "update", *_changes(rng, CHANGES["coinbase"])) for i in range(updates)]
    return None, frames


def hyperliquid_frames(rng: random.Random, updates: int) -> tuple[Any, list[str]]:
    frames = []
    for i in range(updates + 1):
        n = SNAPSHOT_LEVELS["hyperliquid"]
        bids = [{"px": str(MID - (k + 1) * TICK), "sz": _depth(rng), "n": 1} for k in range(n)]
        asks = [{"px": str(MID + (k + 1) * TICK), "sz": _depth(rng), "n": 1} for k in range(n)]
        data = {"coin": "BTC", "time": 1736165581000 + 500 * i, "levels": [bids, asks]}
        frames.append(json.dumps({"channel": "l2Book", "data": data}))
    return None, frames


Parse = Callable[[str, datetime], tuple[BookUpdate, ...]]
EXCHANGES: dict[str, tuple[Callable[[random.Random, int], tuple[Any, list[str]]], Any, str]] = {
    "binance": (binance_frames, binance_wire, "spot"),
    "bybit": (bybit_frames, bybit_wire, "perps"),
    "okx": (okx_frames, okx_wire, "spot"),
    "coinbase": (coinbase_frames, coinbase_wire, "spot"),
    "hyperliquid": (hyperliquid_frames, hyperliquid_wire, "perps"),
}


def run_kirby(exchange: str, rest: Any, frames: list[str]) -> tuple[float, SeriesBook]:
    _, wire, market_type = EXCHANGES[exchange]
    parse: Parse = wire.parse_depth
    feeder: SeriesBook | CoinbaseConnection
    if exchange == "coinbase":
        feeder = CoinbaseConnection()
    else:
        feeder = series_book(exchange, market_type, "BTC")
    feed = feeder.feed
    start = time.process_time()
    if rest is not None:
        feed(binance_wire.parse_depth_snapshot(rest, "BTCUSDT", AT))
    for raw in frames:
        for update in parse(raw, AT):
            feed(update)
    elapsed = time.process_time() - start
    book = feeder.books["BTC-USD"] if isinstance(feeder, CoinbaseConnection) else feeder
    return elapsed, book


def run_alone(decode: Callable[[str], object], frames: list[str]) -> float:
    start = time.process_time()
    for raw in frames:
        decode(raw)
    return time.process_time() - start


def exact_top(
    exchange: str, rest: Any, frames: list[str]
) -> tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]:
    """The top 20 rebuilt from the frames with `json.loads(parse_float=Decimal)` and
    Decimal(text) of every level, no cache, no text: what Kirby's book must equal."""
    sides: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
    keys = {
        "binance": ("b", "a"),
        "bybit": ("b", "a"),
        "okx": ("bids", "asks"),
    }

    def apply(rows: list[tuple[str, str]], side: dict[Decimal, Decimal], reset: bool) -> None:
        if reset:
            side.clear()
        for price, size in rows:
            if Decimal(size):
                side[Decimal(price)] = Decimal(size)
            else:
                side.pop(Decimal(price), None)

    if rest is not None:
        apply(rest["bids"], sides[0], True)
        apply(rest["asks"], sides[1], True)
    for raw in frames:
        message = json.loads(raw)
        if exchange == "hyperliquid":
            bids, asks = ([(r["px"], r["sz"]) for r in s] for s in message["data"]["levels"])
            apply(bids, sides[0], True)
            apply(asks, sides[1], True)
        elif exchange == "coinbase":
            for event in message["events"]:
                snap = event["type"] == "snapshot"
                rows = [(u["side"], u["price_level"], u["new_quantity"]) for u in event["updates"]]
                apply([(p, q) for s, p, q in rows if s == "bid"], sides[0], snap)
                apply([(p, q) for s, p, q in rows if s == "offer"], sides[1], snap)
        else:
            data = message["data"]
            for row in data if exchange == "okx" else [data]:
                snap = message.get("type", message.get("action")) == "snapshot"
                b, a = keys[exchange]
                apply([(r[0], r[1]) for r in row[b]], sides[0], snap)
                apply([(r[0], r[1]) for r in row[a]], sides[1], snap)
    bids = tuple((p, sides[0][p]) for p in sorted(sides[0], reverse=True)[:20])
    asks = tuple((p, sides[1][p]) for p in sorted(sides[1])[:20])
    return bids, asks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print(
        f"{'exchange':<12} {'levels/msg':>10} {'kirby upd/s':>12} {'us/upd':>7} "
        f"{'decoder/s':>10} {'json.loads/s':>13} {'kirby/decoder':>14}  target 50k"
    )
    for exchange, (generate, wire, _) in EXCHANGES.items():
        rest, frames = generate(random.Random(args.seed), args.updates)
        timings, book = [], None
        for _ in range(args.repeat):
            elapsed, book = run_kirby(exchange, rest, frames)
            timings.append(elapsed)
        assert book is not None
        if book.counters.gaps or book.counters.crossed:
            raise SystemExit(f"{exchange}: the generated frames broke the book: {book.counters}")
        if book.book.top(20) != exact_top(exchange, rest, frames):
            raise SystemExit(f"{exchange}: the book's top 20 differs from the exact rebuild")
        count = len(frames) + (rest is not None)
        kirby = count / min(timings)
        decoder = len(frames) / min(
            run_alone(wire.DEPTH_DECODER.decode, frames) for _ in range(args.repeat)
        )
        loads = len(frames) / min(run_alone(json.loads, frames) for _ in range(args.repeat))
        met = "met" if kirby >= 50_000 else "NOT met"
        if decoder < 50_000:
            met += " (the decoder alone is under 50k: the engine's limit)"
        print(
            f"{exchange:<12} {CHANGES[exchange]:>10} {kirby:>12,.0f} {1e6 / kirby:>7.1f} "
            f"{decoder:>10,.0f} {loads:>13,.0f} {kirby / decoder:>14.2f}  {met}  "
            f"(book {len(book.book)} levels, {book.counters.updates} applied)"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
