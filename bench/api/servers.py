"""The two servers as real processes (uvicorn on loopback), and how busy the machine is.

Kirby runs exactly as users run it (`kirby api serve`, auth on, INFO access log); the
baseline with uvicorn's defaults. Each server's output is drained by a thread, and its CPU
time is read from /proc so the run can report server CPU per request.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class Server:
    """A server process; its output is drained by a thread (never blocks on a full pipe)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.tail: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "Uvicorn running on" in line:
                self.ready.set()
            if "error" in line.lower() and "errors" not in line.lower():
                self.tail = [*self.tail[-20:], line]

    def wait_ready(self) -> None:
        if not self.ready.wait(60):
            raise RuntimeError(f"{self.name} did not start: {''.join(self.tail)}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_kirby(url: str, port: int, env: dict[str, str] | None = None) -> Server:
    """`kirby api serve` on `port` (waits for nothing: call `wait_ready`)."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KIRBY_")}
    kirby_env = {
        **base_env,
        "KIRBY_DATABASE_URL": url,
        "KIRBY_API_RATE_LIMIT_PER_MINUTE": "1000000000",
        "KIRBY_API_WS_MAX_CONNECTIONS": "10000",
        "KIRBY_LOG_LEVEL": "INFO",
        **(env or {}),
    }
    code = (
        "import sys; from kirby_cli.api import api; from kirby_core.settings import Settings;"
        "from kirby_core.logs import configure_logging; s = Settings();"
        "configure_logging(s.log_level, s.log_format);"
        "api.main(['serve', '--port', sys.argv[1]], obj=s)"
    )
    return Server(f"kirby:{port}", [sys.executable, "-c", code, str(port)], kirby_env)


def start_servers(url: str) -> tuple[Server, int, Server, int]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KIRBY_")}
    kirby_port, baseline_port = free_port(), free_port()
    kirby = start_kirby(url, kirby_port)
    baseline_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    baseline = Server(
        "baseline",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.api.baseline:app",
            "--host",
            HOST,
            "--port",
            str(baseline_port),
            "--no-access-log",
        ],
        {**base_env, "BASELINE_DATABASE_URL": baseline_url},
    )
    kirby.wait_ready()
    baseline.wait_ready()
    return kirby, kirby_port, baseline, baseline_port


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
