"""A real S3-compatible server for tests: moto's standalone `moto_server`, over HTTP.

`moto_server` (PyPI `moto[server]`, a dev dependency) is started as a child process on a free
loopback port in its own temporary directory and stopped afterwards. Kirby reaches it the way
a deployment reaches S3: an `s3://` URL, `KIRBY_S3_ENDPOINT_URL`, and credentials in the
standard AWS variables. Without `moto_server` the tests skip, unless
KIRBY_REQUIRE_SERVICES=1 (read at import: the harness clears KIRBY_* before each test).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("KIRBY_REQUIRE_SERVICES") == "1"
START_SECONDS = 30
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "kirby-test",
    "AWS_SECRET_ACCESS_KEY": "kirby-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str


def _binary() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"  # the venv's, when not on PATH
    return shutil.which("moto_server") or (str(beside) if beside.exists() else None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    binary = _binary()
    if binary is None:
        if REQUIRE_SERVICES:
            pytest.fail("KIRBY_REQUIRE_SERVICES=1 but moto_server is not installed")
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp(prefix="kirby-s3-")
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:  # readiness probe, bounded
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()  # loopback http
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start on {endpoint}")
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket (its name), with the AWS variables pointing at the test server."""
    import uuid

    import s3fs

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"kirby-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(endpoint_url=s3_server.endpoint_url, skip_instance_cache=True).mkdir(bucket)
    return bucket
