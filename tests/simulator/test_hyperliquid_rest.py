"""Hyperliquid POST /info through the real hyperliquid-python-sdk (and raw HTTP for errors)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import yaml
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hyperliquid"
MINUTE = 60_000
HOUR = 3_600_000


def _recorded(name: str) -> object:
    cassette = yaml.safe_load((FIXTURES / name).read_text())
    return cassette["interactions"][-1]["response"]["body"]["string"]


def test_meta_is_the_recorded_universe(info: Info) -> None:
    recorded = yaml.safe_load(_recorded("info.yaml"))["universe"]  # JSON is YAML
    assert info.meta() == {"universe": recorded}
    assert info.meta(dex="") == {"universe": recorded}
    assert info.coin_to_asset["BTC"] == 0 and info.coin_to_asset["APT"] == 27


def test_all_mids_cover_the_universe_with_decimal_strings(info: Info) -> None:
    mids = info.all_mids()
    assert list(mids) == [coin["name"] for coin in info.meta()["universe"]]
    assert all(Decimal(mid) > 0 for mid in mids.values())


def test_candle_window_includes_the_candles_containing_start_and_end(
    info: Info, threaded_sim: SimulatorServer
) -> None:
    now = threaded_sim.clock.now_ms()
    start, end = now - 5 * HOUR - 7 * MINUTE - 1234, now - HOUR - 123
    candles = info.candles_snapshot("ETH", "15m", start, end)
    assert candles[0]["t"] <= start <= candles[0]["T"]
    assert candles[-1]["t"] <= end <= candles[-1]["T"]
    assert [c["t"] for c in candles] == list(range(candles[0]["t"], candles[-1]["t"] + 1, 900_000))
    first = candles[0]
    assert set(first) == {"t", "T", "s", "i", "o", "c", "h", "l", "v", "n"}
    assert (first["s"], first["i"], first["T"] - first["t"]) == ("ETH", "15m", 899_999)
    assert isinstance(first["n"], int) and isinstance(first["o"], str)
    assert Decimal(first["l"]) <= min(Decimal(first["o"]), Decimal(first["c"]))


def test_history_ends_with_the_forming_candle(info: Info, threaded_sim: SimulatorServer) -> None:
    now = threaded_sim.clock.now_ms()
    candles = info.candles_snapshot("BTC", "1h", now - 3 * HOUR, now + 10 * HOUR)
    assert candles[-1]["t"] == now // HOUR * HOUR
    assert info.candles_snapshot("BTC", "1m", now + HOUR, now + 2 * HOUR) == []
    assert info.candles_snapshot("BTC", "1m", now - HOUR, now - 2 * HOUR) == []


def test_only_the_most_recent_5000_candles_are_served() -> None:
    config = SimulatorConfig(start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as sim:
        client = Info(sim.base_url, skip_ws=True)
        now = sim.clock.now_ms()
        forming = now // MINUTE * MINUTE
        minutes = client.candles_snapshot("BTC", "1m", 0, now)
        hours = client.candles_snapshot("BTC", "1h", now - 10_000 * HOUR, now)
        client.session.close()
    assert len(minutes) == 5001
    assert (minutes[0]["t"], minutes[-1]["t"]) == (forming - 5000 * MINUTE, forming)
    assert len(hours) == 5001 and hours[-1]["t"] == now // HOUR * HOUR


def test_quiet_minutes_are_absent(threaded_sim: SimulatorServer) -> None:
    client = Info(threaded_sim.base_url, skip_ws=True)
    now = threaded_sim.clock.now_ms()
    candles = client.candles_snapshot("CFX", "1m", now - 1000 * MINUTE, now - MINUTE)
    client.session.close()
    opens = [c["t"] for c in candles]
    assert 0 < len(opens) < 1000, "CFX is a small coin: some minutes have no trades"
    gaps = [b - a for a, b in itertools.pairwise(opens)]
    assert min(gaps) > 0
    assert max(gaps) > MINUTE


def test_funding_history_pages_by_500_hourly_rows(
    info: Info, threaded_sim: SimulatorServer
) -> None:
    now = threaded_sim.clock.now_ms()
    start = now - 1200 * HOUR
    rows: list[dict] = []
    while True:
        page = info.funding_history("BTC", start)
        rows.extend(page)
        if len(page) < 500:
            break
        assert len(page) == 500
        start = page[-1]["time"] + 1
    hours = [row["time"] // HOUR for row in rows]
    assert hours == list(range(hours[0], hours[0] + len(rows)))
    assert len(rows) in (1199, 1200) and rows[-1]["time"] <= now
    assert any(row["time"] % HOUR for row in rows), "times carry millisecond jitter"
    assert set(rows[0]) == {"coin", "fundingRate", "premium", "time"}
    assert all(abs(Decimal(row["fundingRate"])) < Decimal("0.001") for row in rows)
    assert all(abs(Decimal(row["premium"])) < Decimal("0.01") for row in rows)
    window = info.funding_history("BTC", now - 10 * HOUR, now - 5 * HOUR)
    assert all(now - 10 * HOUR <= row["time"] <= now - 5 * HOUR for row in window)
    assert len(window) == 5


def test_l2_book_levels(info: Info) -> None:
    book = info.l2_snapshot("DYDX")
    bids, asks = book["levels"]
    assert book["coin"] == "DYDX" and len(bids) == len(asks) == 20
    assert Decimal(bids[0]["px"]) < Decimal(asks[0]["px"])
    assert [Decimal(b["px"]) for b in bids] == sorted(
        (Decimal(b["px"]) for b in bids), reverse=True
    )


def _post(sim: SimulatorServer, body: object, **kwargs: object) -> requests.Response:
    with requests.Session() as session:
        return session.post(f"{sim.base_url}/info", json=body, **kwargs)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "nonsense"},
        {
            "type": "candleSnapshot",
            "req": {"coin": "BTC", "interval": "7m", "startTime": 0, "endTime": 1},
        },
        {"type": "candleSnapshot", "req": {"coin": "BTC", "interval": "1m"}},
        {"type": "fundingHistory", "coin": "BTC"},
        {"type": "fundingHistory", "coin": "BTC", "startTime": "yesterday"},
        ["meta"],
    ],
)
def test_malformed_bodies_answer_422_plain_text(
    threaded_sim: SimulatorServer, body: object
) -> None:
    response = _post(threaded_sim, body)
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text.startswith("Failed to deserialize the JSON body into the target type")


def test_non_json_body_and_content_type(threaded_sim: SimulatorServer) -> None:
    with requests.Session() as session:
        url = f"{threaded_sim.base_url}/info"
        broken = session.post(url, data=b"{", headers={"Content-Type": "application/json"})
        untyped = session.post(url, data=b'{"type":"meta"}', headers={"Content-Type": "text/plain"})
    assert broken.status_code == 422
    assert untyped.status_code == 415


def test_unknown_coin_is_a_server_error(threaded_sim: SimulatorServer) -> None:
    candle = {"coin": "NOPE", "interval": "1m", "startTime": 0, "endTime": 1}
    for body in (
        {"type": "candleSnapshot", "req": candle},
        {"type": "fundingHistory", "coin": "NOPE", "startTime": 0},
    ):
        response = _post(threaded_sim, body)
        assert (response.status_code, response.json()) == (500, None)


def test_sdk_reports_a_422_as_client_error(info: Info) -> None:
    with pytest.raises(ClientError) as caught:
        info.candles_snapshot("BTC", "7m", 0, 1)
    assert caught.value.status_code == 422


def test_weight_limit_answers_429_until_the_minute_frees() -> None:
    with run_simulator_in_thread(SimulatorConfig(start=START, weight_per_minute=45)) as sim:
        client = Info(sim.base_url, skip_ws=True)  # spotMeta + meta: 40 of 45
        assert len(client.all_mids()) == 28  # weight 2
        with pytest.raises(ClientError) as caught:
            client.meta()
        client.session.close()
    assert (caught.value.status_code, caught.value.error_message) == (429, "null")
    headers = caught.value.error_data  # the SDK files a non-JSON error's headers there
    assert int(headers["Retry-After"]) >= 1


def test_rate_limits_can_be_switched_off() -> None:
    with run_simulator_in_thread(SimulatorConfig(start=START, rate_limits=False)) as sim:
        client = Info(sim.base_url, skip_ws=True)
        metas = [client.meta() for _ in range(70)]  # 1400 weight, over the default 1200
        client.session.close()
    assert all(len(meta["universe"]) == 28 for meta in metas)
