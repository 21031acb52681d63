"""Kirby's own PostgreSQL, used when no database URL is configured.

The server comes from the `pgserver` wheel (PostgreSQL binaries on PyPI), so a fresh clone
needs neither Docker nor a system server. It lives in `<home>/postgres`, listens on a unix
socket only, and is left running between commands so that they reuse it; `kirby db stop`
stops it. When a URL is configured this module is never used.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path
from types import ModuleType

from kirby_core.errors import StorageUnavailable

log = logging.getLogger(__name__)

REALTIME_DATABASE = "kirby"
TRAINING_DATABASE = "kirby_training"


def _pgserver() -> ModuleType:
    """Import pgserver lazily (it is heavy) and without its platformdirs warning."""
    with warnings.catch_warnings():  # XDG_RUNTIME_DIR is unset on servers and in CI
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver._commands

    return pgserver


def data_dir(home: Path) -> Path:
    return (home / "postgres").resolve()


def start(home: Path, databases: tuple[str, ...] = (REALTIME_DATABASE, TRAINING_DATABASE)) -> str:
    """Start (or reuse) the embedded server, create `databases`, return the server URL.

    The URL names the maintenance database; `urls.with_database` points it elsewhere.
    """
    pgserver = _pgserver()
    pgdata = data_dir(home)
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    except (subprocess.SubprocessError, OSError) as exc:
        raise StorageUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}"
        ) from exc
    listing = server.psql("SELECT datname FROM pg_database;")
    existing = {line.strip() for line in listing.splitlines()}
    for name in databases:
        if name not in existing:
            server.psql(f'CREATE DATABASE "{name}";')
            log.info("embedded database created name=%s", name)
    uri: str = server.get_uri()
    return uri


def is_running(home: Path) -> bool:
    pid_file = data_dir(home) / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def stop(home: Path) -> bool:
    """Stop the embedded server; False when it was not running."""
    if not is_running(home):
        return False
    pg_ctl = _pgserver()._commands.pg_ctl
    pgdata = data_dir(home)
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs postgres as this user
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    log.info("embedded postgres stopped data_dir=%s", pgdata)
    return True
