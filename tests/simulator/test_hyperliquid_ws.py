"""Hyperliquid /ws protocol and live pushes, with the `websockets` client."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import time
from decimal import Decimal

import pytest
from hyperliquid.info import Info
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.helpers import next_on, open_ws, post_info, receive, subscribe

BTC_1M = {"type": "candle", "coin": "BTC", "interval": "1m"}


async def test_subscribe_ack_snapshot_and_duplicate(sim: SimulatorServer) -> None:
    ws = await open_ws(sim)
    ack = await subscribe(ws, BTC_1M)
    assert ack == {
        "channel": "subscriptionResponse",
        "data": {"method": "subscribe", "subscription": BTC_1M},
    }
    snapshot = await receive(ws)
    assert snapshot["channel"] == "candle" and isinstance(snapshot["data"], dict)
    forming = sim.clock.now_ms() // 60_000 * 60_000
    assert snapshot["data"]["t"] in (forming, forming - 60_000), "the latest candle"
    assert (snapshot["data"]["s"], snapshot["data"]["i"]) == ("BTC", "1m")
    await ws.send(json.dumps({"method": "subscribe", "subscription": BTC_1M}))
    duplicate = await next_on(ws, "error")
    assert duplicate == 'Already subscribed: {"type":"candle","coin":"BTC","interval":"1m"}'
    await ws.close()


async def test_unsubscribe(sim: SimulatorServer) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, BTC_1M)
    await ws.send(json.dumps({"method": "unsubscribe", "subscription": BTC_1M}))
    ack = await next_on(ws, "subscriptionResponse")
    assert ack == {"method": "unsubscribe", "subscription": BTC_1M}
    assert sim.state()["subscriptions"] == 0
    await ws.send(json.dumps({"method": "unsubscribe", "subscription": BTC_1M}))
    error = await next_on(ws, "error")
    assert error.startswith("Already unsubscribed: ")
    await subscribe(ws, {"type": "activeAssetCtx", "coin": "ETH"})
    channels = {(await receive(ws))["channel"] for _ in range(20)}
    assert channels == {"activeAssetCtx"}, "no candle after unsubscribing"
    await ws.close()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("hello", "Error parsing JSON into valid websocket request: hello"),
        (
            '{"method":"subscribe","subscription":{"type":"candle","coin":"BTC","interval":"2m"}}',
            "Error parsing JSON into valid websocket request: ",
        ),
        (
            '{"method":"subscribe","subscription":{"type":"liquidations","coin":"BTC"}}',
            "Error parsing JSON into valid websocket request: ",
        ),
        (
            '{"method":"subscribe","subscription":{"type":"trades","coin":"NOPE"}}',
            'Invalid subscription: {"type":"trades","coin":"NOPE"}',
        ),
    ],
)
async def test_bad_requests_get_errors(sim: SimulatorServer, message: str, expected: str) -> None:
    ws = await open_ws(sim)
    await ws.send(message)
    reply = await receive(ws)
    assert reply["channel"] == "error" and reply["data"].startswith(expected)
    await ws.send(json.dumps({"method": "ping"}))
    assert await receive(ws) == {"channel": "pong"}, "the connection survives"
    await ws.close()


async def test_candle_pushes_accumulate_and_the_final_equals_the_snapshot(
    sim: SimulatorServer,
) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, BTC_1M)
    await next_on(ws, "candle")  # the snapshot
    minute = (await next_on(ws, "candle"))["t"] + 60_000  # the next full minute
    pushes: list[dict] = []
    while (candle := await next_on(ws, "candle"))["t"] <= minute:
        if candle["t"] == minute:
            pushes.append(candle)
    await ws.close()
    assert 8 <= len(pushes) <= 13, "7-12 trade events a minute, then the final update"
    for before, after in itertools.pairwise(pushes):
        assert after == before or (after["o"] == before["o"] and after["n"] > before["n"])
        assert Decimal(after["h"]) >= Decimal(before["h"])
        assert Decimal(after["l"]) <= Decimal(before["l"])
        assert Decimal(after["v"]) >= Decimal(before["v"])
    request = {"coin": "BTC", "interval": "1m", "startTime": minute, "endTime": minute}
    served = await post_info(sim, {"type": "candleSnapshot", "req": request})
    assert served == [pushes[-1]]
    assert pushes[-1] == pushes[-2], "the final update repeats the last trade's state"


async def test_higher_interval_pushes_match_the_snapshot() -> None:
    async with SimulatorServer(SimulatorConfig(speed=1200, start=START)) as fast:
        ws = await open_ws(fast)
        await subscribe(ws, {"type": "candle", "coin": "ETH", "interval": "5m"})
        await next_on(ws, "candle")  # the snapshot
        last = await next_on(ws, "candle")
        while (candle := await next_on(ws, "candle"))["t"] == last["t"]:
            last = candle
        await ws.close()
        first = last["t"]
        request = {"coin": "ETH", "interval": "5m", "startTime": first, "endTime": first}
        assert await post_info(fast, {"type": "candleSnapshot", "req": request}) == [last]


async def test_speed_factor_runs_simulated_minutes_in_real_seconds() -> None:
    async with SimulatorServer(SimulatorConfig(speed=600, start=START)) as fast:
        ws = await open_ws(fast)
        await subscribe(ws, BTC_1M)
        first = (await next_on(ws, "candle"))["t"]
        began = time.monotonic()
        while (await next_on(ws, "candle"))["t"] < first + 5 * 60_000:
            pass
        elapsed = time.monotonic() - began
        await ws.close()
    assert elapsed < 2.0, "5 simulated minutes at 600x take 0.5 s"
    assert fast.clock.start_ms == START.timestamp() * 1000


async def test_asset_context_about_once_a_second(sim: SimulatorServer) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, {"type": "activeAssetCtx", "coin": "SOL"})
    seen = []
    for _ in range(31):
        data = await next_on(ws, "activeAssetCtx")
        seen.append((sim.clock.now_ms(), data))
    await ws.close()
    spacing = (seen[-1][0] - seen[1][0]) / 29
    assert 800 <= spacing <= 1250, f"{spacing} simulated ms between contexts"
    for _, data in seen:
        assert data["coin"] == "SOL"
        ctx = data["ctx"]
        assert set(ctx) == {
            "funding",
            "openInterest",
            "prevDayPx",
            "dayNtlVlm",
            "premium",
            "oraclePx",
            "markPx",
            "midPx",
            "impactPxs",
            "dayBaseVlm",
        }
        for name, value in ctx.items():
            if name == "impactPxs":
                assert value is None or all(isinstance(px, str) for px in value)
            elif name in ("premium", "midPx"):
                assert value is None or isinstance(value, str)
            else:
                assert isinstance(value, str) and Decimal(value).is_finite()


async def test_trades_book_and_mids_subscriptions(sim: SimulatorServer) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, {"type": "trades", "coin": "BTC"})
    await subscribe(ws, {"type": "l2Book", "coin": "ETH"})
    await subscribe(ws, {"type": "allMids"})
    trades = await next_on(ws, "trades")
    book = await next_on(ws, "l2Book")
    mids = await next_on(ws, "allMids")
    await ws.close()
    assert trades and {t["coin"] for t in trades} == {"BTC"}
    assert set(trades[0]) == {"coin", "side", "px", "sz", "time", "hash", "tid", "users"}
    assert book["coin"] == "ETH" and len(book["levels"]) == 2
    assert len(mids["mids"]) == 28 and "kPEPE" in mids["mids"]


async def test_idle_connections_are_closed_but_pings_keep_them() -> None:
    config = SimulatorConfig(start=START, ws_idle_timeout=0.3)
    async with SimulatorServer(config) as sim:
        ws = await open_ws(sim)
        for _ in range(6):
            await ws.send(json.dumps({"method": "ping"}))
            assert await receive(ws) == {"channel": "pong"}
            await asyncio.sleep(0.1)  # idle, but less than the timeout
        with pytest.raises(ConnectionClosedOK):
            await receive(ws, within=3)
        assert ws.close_code == 1000


async def test_connection_subscription_and_message_limits() -> None:
    config = SimulatorConfig(
        start=START, ws_connections_per_ip=1, ws_subscriptions_per_ip=2, ws_messages_per_minute=3
    )
    async with SimulatorServer(config) as sim:
        ws = await open_ws(sim)
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(sim)
        assert refused.value.response.status_code == 429
        await subscribe(ws, {"type": "activeAssetCtx", "coin": "BTC"})
        await subscribe(ws, {"type": "activeAssetCtx", "coin": "ETH"})
        await ws.send(json.dumps({"method": "subscribe", "subscription": BTC_1M}))
        assert await next_on(ws, "error") == "Cannot track more than 2 total subscriptions"
        await ws.send(json.dumps({"method": "ping"}))
        assert (await next_on(ws, "error")).startswith("Too many messages")
        await ws.close()


def test_the_sdk_websocket_manager_gets_candles() -> None:
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as sim:
        received: queue.Queue[dict] = queue.Queue()
        client = Info(sim.base_url)  # with its WebSocket thread
        client.subscribe(BTC_1M, received.put)
        first, second = received.get(timeout=5), received.get(timeout=5)
        # The server closes first: after a client-side close the SDK's thread stays blocked
        # in epoll on the closed socket (a websocket-client quirk), so it would never end.
        sim.faults.drop_connections()
        client.ws_manager.join(timeout=5)
    client.disconnect_websocket()
    client.session.close()
    assert first["channel"] == second["channel"] == "candle"
    assert second["data"]["s"] == "BTC" and not client.ws_manager.is_alive()
