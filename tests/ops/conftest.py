"""Ops test harness: the API fixtures, a stream heartbeat planted as the collector writes it,
and Prometheus's own tools (Debian's `prometheus` package), which CI installs.

A test that needs `promtool` or `prometheus` skips when the binary is absent, except under
`KIRBY_REQUIRE_SERVICES=1` (CI), where it fails instead (`tests.services`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import asyncpg

from kirby_core.backups import Backup, BackupStore, Manifest
from kirby_core.locations import location
from kirby_core.settings import Database
from tests import services
from tests.api.conftest import api  # noqa: F401  (the app on the test database)
from tests.conftest import REPO
from tests.db.conftest import catalog  # noqa: F401  (the synced realtime catalog)

PROMETHEUS_DIR = REPO / "docker" / "prometheus"
GRAFANA_DIR = REPO / "docker" / "grafana"


def binary(name: str) -> Path:
    """The path of `name` from Debian's prometheus package (see tests.services.binary)."""
    return services.binary(name, "prometheus")


async def plant_heartbeat(
    conn: asyncpg.Connection,
    heartbeat_at: datetime,
    *,
    state: str = "running",
    last_message_at: datetime | None = None,
    covered_through: datetime | None = None,
    reconnects: int = 0,
    buffer_sizes: dict[str, int] | None = None,
) -> None:
    """Upsert the collector `test-collector`'s heartbeat row with these values (its one
    exchange, hyperliquid, in the same state with the same reconnects and last message)."""
    feed = {
        "state": state,
        "reconnects": reconnects,
        "last_message_at": None if last_message_at is None else last_message_at.isoformat(),
    }
    await conn.execute(
        """INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at,
               last_message_at, reconnects, buffer_sizes, state, covered_through,
               dropped_rows, refused_rows, feeds)
           VALUES ('test-collector', 'test-host', 1, $1, $1, $2, $3, $4::jsonb, $5, $6, 2, 3,
                   $7::jsonb)
           ON CONFLICT (collector_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
               last_message_at = EXCLUDED.last_message_at, reconnects = EXCLUDED.reconnects,
               buffer_sizes = EXCLUDED.buffer_sizes, state = EXCLUDED.state,
               covered_through = EXCLUDED.covered_through, feeds = EXCLUDED.feeds""",
        heartbeat_at,
        last_message_at,
        reconnects,
        json.dumps(buffer_sizes or {}),
        state,
        covered_through,
        json.dumps({"hyperliquid": feed}),
    )


def plant_backup(directory: Path, database: Database, taken_at: datetime) -> None:
    """A complete backup's files in a local backup location, as `take_backup` leaves them
    (the dump's bytes are not read by what the tests here check: only the manifest)."""
    store = BackupStore(location(directory))
    dump = directory.parent / f"{database}.dump"
    dump.write_bytes(b"PGDMP")
    backup = Backup(database, taken_at.date())
    store.put(
        dump,
        backup,
        Manifest(
            database=database,
            day=taken_at.date().isoformat(),
            taken_at=taken_at.isoformat(timespec="seconds"),
            server_version="16.2",
            pg_dump_major=16,
            dump_bytes=5,
            tables={"candles": 0},
        ),
    )
