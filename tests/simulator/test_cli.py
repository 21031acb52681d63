"""`kirby sim` as a separate process, steered through the admin endpoint."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import click
import pytest
import requests
from click.testing import CliRunner

from kirby_cli.sim import sim

LAUNCH = "from kirby_cli.sim import sim; sim()"


def test_every_option_is_documented() -> None:
    result = CliRunner().invoke(sim, ["--help"])
    assert result.exit_code == 0
    for parameter in sim.params:
        assert isinstance(parameter, click.Option) and parameter.help, parameter.name
    flags = ("--port", "--seed", "--speed", "--drop-every", "--stall-every", "--stall-for")
    for flag in (*flags, "--depth-update-ms", "--book-gap-every"):
        assert flag in result.output


def test_bad_speed_is_refused() -> None:
    result = CliRunner().invoke(sim, ["--speed", "0"])
    assert result.exit_code == 2 and "--speed" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--depth-update-ms", "0"], "'--depth-update-ms': 0 is not in the range x>=1"),
        (["--depth-update-ms", "fast"], "'--depth-update-ms': 'fast' is not a valid integer"),
        (["--book-gap-every", "0"], "'--book-gap-every': 0.0 is not in the range x>0"),
        (["--book-gap-every", "-2.5"], "'--book-gap-every': -2.5 is not in the range x>0"),
        (["--book-gap-every", "often"], "'--book-gap-every': 'often' is not a valid float"),
    ],
)
def test_bad_book_knobs_name_the_value_and_what_is_allowed(
    arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(sim, arguments)
    assert result.exit_code == 2
    assert f"Invalid value for {message}" in result.output
    assert "Traceback" not in result.output


def test_subprocess_logs_its_urls_obeys_the_admin_endpoint_and_stops_on_ctrl_c() -> None:
    command = [
        sys.executable,
        "-c",
        LAUNCH,
        "--port",
        "0",
        "--seed",
        "11",
        "--speed",
        "60",
        "--start",
        "2025-01-06T12:00",
        "--stall-every",
        "30",
        "--depth-update-ms",
        "5000",
        "--book-gap-every",
        "0.01",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("event=simulator_started ")
        base = re.search(r"hyperliquid_rest=(\S+)", line).group(1)
        assert f"hyperliquid_ws={base.replace('http', 'ws')}/ws" in line
        assert f"binance_spot={base} binance_futures={base}" in line
        with requests.Session() as http:
            state = http.get(f"{base}/_sim/state").json()
            assert (state["seed"], state["speed"]) == (11, 60.0)
            assert state["now"].startswith("2025-01-06T12:0")
            http.post(f"{base}/_sim/faults", json={"kind": "http_429", "count": 1})
            refused = http.post(f"{base}/info", json={"type": "meta"})
            served = http.post(f"{base}/info", json={"type": "meta"})
            books = http.get(f"{base}/api/v5/market/books", params={"instId": "BTC-USDT"})
            # a book state every 5000 simulated ms: each served book is stamped on one
            assert int(books.json()["data"][0]["ts"]) % 5000 == 0
            # nobody subscribes to depth: the scheduled gaps wait for an update to leave out
            for _ in range(1000):
                state = http.get(f"{base}/_sim/state").json()
                if state["faults"]["pending"]["book_gaps"]:
                    break
        assert (refused.status_code, served.status_code) == (429, 200)
        assert state["faults"]["pending"]["book_gaps"] > 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert "event=simulator_stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
