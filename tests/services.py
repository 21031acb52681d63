"""Real services started by the tests themselves: free loopback ports, `kirby api serve`
processes, and binaries from Debian packages (prometheus, nginx) that CI installs.

A test that needs a binary skips when it is absent, except under `KIRBY_REQUIRE_SERVICES=1`
(CI), where it fails instead. Every process runs in the test's temporary directory and is
stopped by the fixture that started it; nothing relies on a system service.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kirby_core.db.urls import DatabaseUrls
from tests.conftest import REPO

DEADLINE_SECONDS = 60.0
KIRBY = Path(sys.executable).with_name("kirby")

# Read at import, before the autouse fixture clears KIRBY_* from the environment.
_REQUIRE_SERVICES = os.environ.get("KIRBY_REQUIRE_SERVICES") == "1"


def binary(name: str, package: str) -> Path:
    """The path of `name`, or a skip (a failure under KIRBY_REQUIRE_SERVICES=1)."""
    found = shutil.which(name)
    if found is None:
        message = f"`{name}` is not installed (Debian: apt-get install {package})"
        if _REQUIRE_SERVICES:
            pytest.fail(message + "; KIRBY_REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)
    return Path(found)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, **client: object
) -> None:
    """Until `url` answers 200; a failure shows the end of the process's log."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    with httpx.Client(timeout=2, **client) as http:  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"{url} not ready within {DEADLINE_SECONDS}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_api(
    database_urls: DatabaseUrls, workdir: Path, port: int, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """`kirby api serve` on 127.0.0.1:`port`, authentication off unless `env` says otherwise,
    logging to `workdir`/api-<port>.log; returns once /health answers."""
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    full_env = {
        **base,
        "PYTHONPATH": str(REPO),
        "KIRBY_DATABASE_URL": database_urls.realtime,
        "KIRBY_TRAINING_DATABASE_URL": database_urls.training,
        "KIRBY_HOME": str(workdir / ".kirby"),
        "KIRBY_API_AUTH_ENABLED": "false",
        **(env or {}),
    }
    log = workdir / f"api-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(KIRBY), "api", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health", process, log)
    except BaseException:
        stop(process)
        raise
    return process, log
