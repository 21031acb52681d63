"""`kirby sim` as a separate process, steered through the admin endpoint."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import click
import requests
from click.testing import CliRunner

from kirby_cli.sim import sim

LAUNCH = "from kirby_cli.sim import sim; sim()"


def test_every_option_is_documented() -> None:
    result = CliRunner().invoke(sim, ["--help"])
    assert result.exit_code == 0
    for parameter in sim.params:
        assert isinstance(parameter, click.Option) and parameter.help, parameter.name
    for flag in ("--port", "--seed", "--speed", "--drop-every", "--stall-every", "--stall-for"):
        assert flag in result.output


def test_bad_speed_is_refused() -> None:
    result = CliRunner().invoke(sim, ["--speed", "0"])
    assert result.exit_code == 2 and "--speed" in result.output


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
        assert (refused.status_code, served.status_code) == (429, 200)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert "event=simulator_stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
