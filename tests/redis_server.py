"""A real `redis-server` for tests: started on a free loopback port in a temp dir, no
persistence, stopped afterwards (never the system service).

Without the binary the tests that use it skip, unless `KIRBY_REQUIRE_SERVICES=1` (CI), where
they fail: `apt-get install redis-server`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REQUIRE_SERVICES = os.environ.get("KIRBY_REQUIRE_SERVICES") == "1"
_START_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    """The path of a service's binary, or skip (fail under KIRBY_REQUIRE_SERVICES=1)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install redis-server)"
        if REQUIRE_SERVICES:
            pytest.fail(f"KIRBY_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    return path


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.binary = binary("redis-server")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + _START_SECONDS
        while True:  # readiness, not a timing assertion
            try:
                client.ping()
                break
            except redis.ConnectionError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from exc
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["in_process", "redis"])
def shared(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings overrides for each home of limits and caps: this process, or a real Redis."""
    if request.param == "in_process":
        return {}
    return {"redis_url": request.getfixturevalue("redis_server").url}
