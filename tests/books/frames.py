"""Depth frames in each exchange's documented shape, built for the books tests (the wire
tests quote the same shapes literally)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Rows = Sequence[Sequence[str]]


def binance(U: int, u: int, bids: Rows = (), asks: Rows = (), pu: int | None = None) -> str:
    event: dict[str, Any] = {"e": "depthUpdate", "E": 1736165581000 + u, "s": "BTCUSDT"}
    event |= {"U": U, "u": u, "b": list(bids), "a": list(asks)}
    if pu is not None:
        event["pu"] = pu
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": event})


def binance_rest(last: int, bids: Rows, asks: Rows) -> dict[str, Any]:
    return {"lastUpdateId": last, "bids": bids, "asks": asks}


def bybit(kind: str, u: int, bids: Rows = (), asks: Rows = ()) -> str:
    data = {"s": "BTCUSDT", "b": list(bids), "a": list(asks), "u": u, "seq": 7961638724 + u}
    return json.dumps(
        {
            "topic": "orderbook.50.BTCUSDT",
            "type": kind,
            "ts": 1736165581000 + u,
            "data": data,
            "cts": 1736165580998,
        }
    )


def okx(action: str, prev: int, seq: int, bids: Rows = (), asks: Rows = ()) -> str:
    row = {
        "asks": [[*r, "0", "1"] for r in asks],
        "bids": [[*r, "0", "1"] for r in bids],
        "ts": str(1736165581000 + seq),
        "checksum": 0,
        "prevSeqId": prev,
        "seqId": seq,
    }
    return json.dumps(
        {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [row]}
    )


def coinbase(seq: int, *events: tuple[str, str, Rows, Rows]) -> str:
    """events: (type, product, bids, offers)."""

    def updates(side: str, rows: Rows) -> list[dict[str, str]]:
        return [
            {
                "side": side,
                "event_time": "2025-01-06T12:12:30.1Z",
                "price_level": p,
                "new_quantity": q,
            }
            for p, q in rows
        ]

    return json.dumps(
        {
            "channel": "l2_data",
            "client_id": "",
            "timestamp": "2025-01-06T12:12:30.123456789Z",
            "sequence_num": seq,
            "events": [
                {
                    "type": kind,
                    "product_id": product,
                    "updates": updates("bid", bids) + updates("offer", asks),
                }
                for kind, product, bids, asks in events
            ],
        }
    )


def hyperliquid(time_ms: int, bids: Rows, asks: Rows) -> str:
    def side(rows: Rows) -> list[dict[str, Any]]:
        return [{"px": p, "sz": q, "n": 1} for p, q in rows]

    return json.dumps(
        {
            "channel": "l2Book",
            "data": {"coin": "BTC", "time": time_ms, "levels": [side(bids), side(asks)]},
        }
    )
