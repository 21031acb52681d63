"""Each exchange's depth parser on its documented frame: every field of the parsed
update, exact Decimals; malformed frames refused with the field named."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest

from kirby_core.books import BookUpdate
from kirby_core.errors import ExchangeProtocolError
from kirby_core.exchanges import (
    binance_wire,
    bybit_wire,
    coinbase_wire,
    hyperliquid_wire,
    okx_wire,
)

AT = datetime(2025, 1, 6, 12, 12, 31, tzinfo=UTC)
EVENT = datetime(2025, 1, 6, 12, 13, 1, tzinfo=UTC)  # 1736165581000 ms


def test_binance_spot_depth_update() -> None:
    raw = (
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1736165581000,'
        '"s":"BTCUSDT","U":157,"u":160,"b":[["97000.10","0.5"]],"a":[["97001.00","0"]]}}'
    )
    assert binance_wire.parse_depth(raw, AT) == (
        BookUpdate(
            "BTCUSDT",
            False,
            ((D("97000.10"), D("0.5")),),
            ((D("97001.00"), D("0")),),
            sequence=160,
            previous=None,
            first=157,
            time=EVENT,
        ),
    )


def test_binance_futures_depth_update_and_rest_snapshot() -> None:
    raw = (
        '{"e":"depthUpdate","E":1736165581000,"T":1736165580999,"s":"BTCUSDT","U":157,'
        '"u":160,"pu":149,"b":[],"a":[["97001.00","1.25"]]}'
    )
    (update,) = binance_wire.parse_depth(raw, AT)
    assert (update.first, update.sequence, update.previous) == (157, 160, 149)
    assert update.asks == ((D("97001.00"), D("1.25")),) and update.bids == ()
    snapshot = binance_wire.parse_depth_snapshot(
        {"lastUpdateId": 160, "bids": [["97000.10", "0.5"]], "asks": [["97001.00", "1.2"]]},
        "BTCUSDT",
        AT,
    )
    assert snapshot == BookUpdate(
        "BTCUSDT",
        True,
        ((D("97000.10"), D("0.5")),),
        ((D("97001.00"), D("1.2")),),
        sequence=160,
        previous=None,
        first=None,
        time=AT,
    )


def test_bybit_orderbook() -> None:
    raw = (
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1736165581000,"data":{'
        '"s":"BTCUSDT","b":[["97000.10","0.5"]],"a":[["97001.00","1.2"]],"u":18521288,'
        '"seq":7961638724},"cts":1736165580998}'
    )
    assert bybit_wire.parse_depth(raw, AT) == (
        BookUpdate(
            "BTCUSDT",
            True,
            ((D("97000.10"), D("0.5")),),
            ((D("97001.00"), D("1.2")),),
            sequence=18521288,
            previous=None,
            first=None,
            time=EVENT,
        ),
    )
    delta = raw.replace('"snapshot"', '"delta"')
    assert bybit_wire.parse_depth(delta, AT)[0].snapshot is False


def test_okx_books() -> None:
    raw = (
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{'
        '"asks":[["97001.0","1.2","0","3"]],"bids":[["97000.1","0","0","0"]],'
        '"ts":"1736165581000","checksum":0,"prevSeqId":123456,"seqId":123470}]}'
    )
    assert okx_wire.parse_depth(raw, AT) == (
        BookUpdate(
            "BTC-USDT",
            False,
            ((D("97000.1"), D("0")),),
            ((D("97001.0"), D("1.2")),),
            sequence=123470,
            previous=123456,
            first=None,
            time=EVENT,
        ),
    )


def test_coinbase_level2() -> None:
    raw = (
        '{"channel":"l2_data","client_id":"","timestamp":"2025-01-06T12:12:30.123456789Z",'
        '"sequence_num":7,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":['
        '{"side":"bid","event_time":"2025-01-06T12:12:30.1Z","price_level":"97000.10",'
        '"new_quantity":"0.5"},{"side":"offer","event_time":"2025-01-06T12:12:30.1Z",'
        '"price_level":"97001.00","new_quantity":"1.2"}]},{"type":"update",'
        '"product_id":"ETH-USD","updates":[]}]}'
    )
    at = datetime(2025, 1, 6, 12, 12, 30, 123456, tzinfo=UTC)
    assert coinbase_wire.parse_depth(raw, AT) == (
        BookUpdate(
            "BTC-USD",
            True,
            ((D("97000.10"), D("0.5")),),
            ((D("97001.00"), D("1.2")),),
            sequence=7,
            previous=None,
            first=None,
            time=at,
        ),
        BookUpdate("ETH-USD", False, (), (), sequence=7, previous=None, first=None, time=at),
    )


def test_hyperliquid_l2book() -> None:
    raw = (
        '{"channel":"l2Book","data":{"coin":"BTC","time":1736165581000,"levels":['
        '[{"px":"97000.0","sz":"1.5","n":3}],[{"px":"97001.0","sz":"0.2","n":1}]]}}'
    )
    assert hyperliquid_wire.parse_depth(raw, AT) == (
        BookUpdate(
            "BTC",
            True,
            ((D("97000.0"), D("1.5")),),
            ((D("97001.0"), D("0.2")),),
            sequence=1736165581000,
            previous=None,
            first=None,
            time=EVENT,
        ),
    )


@pytest.mark.parametrize(
    ("parse", "raw", "message"),
    [
        (binance_wire.parse_depth, '{"e":"trade"}', "not a depthUpdate"),
        (binance_wire.parse_depth, "not json", "not JSON"),
        (
            binance_wire.parse_depth,
            '{"e":"depthUpdate","E":"soon","s":"X","U":1,"u":2,"b":[],"a":[]}',
            "'E' must be an integer",
        ),
        (
            binance_wire.parse_depth,
            '{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":{},"a":[]}',
            "'b' must be a list",
        ),
        (
            binance_wire.parse_depth,
            '{"e":"depthUpdate","E":1,"s":"X","U":1,"u":"2","b":[],"a":[]}',
            "'u' must be an integer",
        ),
        (
            binance_wire.parse_depth,
            '{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["1","-2"]],"a":[]}',
            "'b' level",
        ),
        (bybit_wire.parse_depth, '{"topic":"kline.1.X","type":"snapshot"}', "not an orderbook"),
        (
            bybit_wire.parse_depth,
            '{"topic":"orderbook.50.X","type":"partial","data":{}}',
            "snapshot or delta",
        ),
        (
            okx_wire.parse_depth,
            '{"arg":{"channel":"books","instId":"X"},"action":"update","data":[{"asks":[],'
            '"bids":[],"ts":"1","prevSeqId":1}]}',
            "missing field 'seqId'",
        ),
        (coinbase_wire.parse_depth, '{"channel":"heartbeats"}', "not an l2_data frame"),
        (
            coinbase_wire.parse_depth,
            json.dumps(
                {
                    "channel": "l2_data",
                    "timestamp": "2025-01-06T12:12:30Z",
                    "sequence_num": 1,
                    "events": [
                        {
                            "type": "update",
                            "product_id": "X",
                            "updates": [{"side": "ask", "price_level": "1", "new_quantity": "1"}],
                        }
                    ],
                }
            ),
            "side must be bid or offer",
        ),
        (
            hyperliquid_wire.parse_depth,
            '{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[]]}}',
            "levels must be",
        ),
    ],
)
def test_malformed_depth_frames_are_refused(
    parse: Callable[[str, datetime], tuple[BookUpdate, ...]], raw: str, message: str
) -> None:
    with pytest.raises(ExchangeProtocolError, match=message):
        parse(raw, AT)


def test_bytes_frames_parse_like_text() -> None:
    raw = '{"e":"depthUpdate","E":1736165581000,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}'
    assert binance_wire.parse_depth(raw.encode(), AT) == binance_wire.parse_depth(raw, AT)


@pytest.mark.parametrize(
    ("module", "raw"),
    [
        (
            binance_wire,
            '{"e":"depthUpdate","E":5,"s":"X","U":1,"u":2,"pu":0,"b":[["1","2"]],"a":[]}',
        ),
        (
            bybit_wire,
            '{"topic":"orderbook.50.X","type":"delta","ts":5,"data":{"s":"X","b":[],'
            '"a":[["2","0"]],"u":9,"seq":1}}',
        ),
        (
            okx_wire,
            '{"arg":{"channel":"books","instId":"X"},"action":"update","data":[{"asks":[],'
            '"bids":[["1","2","0","1"]],"ts":"5","checksum":0,"prevSeqId":3,"seqId":4}]}',
        ),
        (
            hyperliquid_wire,
            '{"channel":"l2Book","data":{"coin":"X","time":5,"levels":[[{"px":"1","sz":"2",'
            '"n":1}],[]]}}',
        ),
    ],
)
def test_the_checked_path_reads_a_good_frame_as_the_fast_path_does(module: Any, raw: str) -> None:
    """The checked path only runs on frames the fast path refused; it must not differ."""
    assert module._checked_depth(json.loads(raw)) == module.parse_depth(raw, AT)


def test_coinbase_checked_path_reads_as_the_fast_path() -> None:
    raw = json.dumps(
        {
            "channel": "l2_data",
            "timestamp": "2025-01-06T12:12:30.123456789Z",
            "sequence_num": 4,
            "events": [
                {
                    "type": "update",
                    "product_id": "X",
                    "updates": [
                        {"side": "offer", "price_level": "2", "new_quantity": "0"},
                        {"side": "bid", "price_level": "1", "new_quantity": "3"},
                    ],
                }
            ],
        }
    )
    assert coinbase_wire._checked_depth(json.loads(raw)) == coinbase_wire.parse_depth(raw, AT)


@pytest.mark.parametrize(
    ("module", "raw"),
    [
        (binance_wire, '{"e":"depthUpdate","E":5,"s":"X","U":1,"u":2,"b":[["1","SIZE"]],"a":[]}'),
        (
            bybit_wire,
            '{"topic":"orderbook.50.X","type":"delta","ts":5,"data":{"s":"X","b":[],'
            '"a":[["2","SIZE"]],"u":9,"seq":1}}',
        ),
        (
            okx_wire,
            '{"arg":{"channel":"books","instId":"X"},"action":"update","data":[{"asks":[],'
            '"bids":[["1","SIZE","0","1"]],"ts":"5","checksum":0,"prevSeqId":3,"seqId":4}]}',
        ),
        (
            coinbase_wire,
            '{"channel":"l2_data","timestamp":"2025-01-06T12:12:30Z","sequence_num":1,'
            '"events":[{"type":"update","product_id":"X","updates":[{"side":"bid",'
            '"price_level":"1","new_quantity":"SIZE"}]}]}',
        ),
        (
            hyperliquid_wire,
            '{"channel":"l2Book","data":{"coin":"X","time":5,"levels":[[{"px":"1","sz":"SIZE",'
            '"n":1}],[]]}}',
        ),
    ],
)
@pytest.mark.parametrize(("size", "exact"), [("1e-3", D("0.001")), ("00.50", D("0.5"))])
def test_sizes_outside_the_text_grammar_parse_exactly_the_checked_way(
    module: Any, raw: str, size: str, exact: D
) -> None:
    """The fast path keeps only plain sizes as text; an exponent or a leading zero is still
    a size, read exactly."""
    (update,) = module.parse_depth(raw.replace("SIZE", size), AT)
    levels = update.bids or update.asks
    assert levels == (((D(2) if module is bybit_wire else D(1)), exact),)
    assert type(levels) is tuple  # the checked way's levels


@pytest.mark.parametrize(
    ("parse", "raw", "message"),
    [
        (
            binance_wire.parse_depth,
            '{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["1","1,5"]],"a":[]}',
            "'b' level",
        ),
        (
            hyperliquid_wire.parse_depth,
            '{"channel":"l2Book","data":{"coin":"X","time":5,"levels":[[{"px":"0","sz":"1",'
            '"n":1}],[]]}}',
            "'bids' level",
        ),
        (
            coinbase_wire.parse_depth,
            '{"channel":"l2_data","timestamp":"2025-01-06T12:12:30Z","sequence_num":1,'
            '"events":[{"type":"update","product_id":"X","updates":[{"side":"bid",'
            '"price_level":"1","new_quantity":"-2"}]}]}',
            "'bid' level",
        ),
    ],
)
def test_bad_levels_are_refused_naming_them(
    parse: Callable[[str, datetime], tuple[BookUpdate, ...]], raw: str, message: str
) -> None:
    with pytest.raises(ExchangeProtocolError, match=message):
        parse(raw, AT)
