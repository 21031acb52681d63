"""Dagster's own storage (runs, event logs, schedules, sensor cursors), chosen by settings.

dagster.yaml names `KirbyStorage` as its `storage`. When `KIRBY_DAGSTER_DATABASE_URL` is
set, Dagster keeps its state in that PostgreSQL database through dagster-postgres; the URL
is rewritten to name the psycopg2 driver (a bare `postgresql://` means psycopg 3 to
SQLAlchemy 2.1, which dagster-postgres does not install). When no URL is configured at all
(neither that nor `KIRBY_DATABASE_URL`), Dagster keeps its state in the `kirby_dagster`
database of Kirby's embedded PostgreSQL, so `dagster dev` works on a fresh clone with one
database server. With an external Kirby database but no Dagster URL, Dagster falls back to
SQLite under `<KIRBY_HOME>/dagster` rather than creating a database on someone else's
server. A plain dagster.yaml cannot express "PostgreSQL when the variable is set":
`{env: ...}` fails when a variable is missing.

The class is never instantiated: Dagster calls `from_config_value`, which returns the real
storage. The choice is made again wherever the instance is rebuilt (run workers, daemon),
from the same environment.

Two settings make partitioned runs cheap to record. A run over a year of daily partitions
records 365 planned and 365 materialization events; dagster-postgres by default opens a new
connection for every one (its engines use SQLAlchemy's NullPool, so a process holds no
idle connection), which made such a run spend ~10 s on bookkeeping for ~1 s of work. Here
every process keeps one pooled connection per storage (what dagster-webserver does for
itself, with no statement timeout), and `DAGSTER_EVENT_BATCH_SIZE` turns on Dagster's
opt-in batch writes, so a step's materializations go in one INSERT. See bench/README.md.
The price: after the server restarts, the first statement on a kept connection fails before
the pool reconnects (Dagster drops a log line it cannot store with a message on stderr; a
run event it cannot store fails the step). Without the pool that statement would have worked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from kirby_core.db import embedded
from kirby_core.db.urls import sqlalchemy_url, with_database
from kirby_core.settings import Settings

DAGSTER_DATABASE = "kirby_dagster"
EVENT_BATCH_SIZE = 1000
"""Events written per batch (Dagster reads it from the environment): a year of days in one."""
POOL_MAX_OVERFLOW = 20
"""Connections beyond the pooled one while threads of one process write at once."""


class KirbyStorage(DagsterStorage, ConfigurableClass):
    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]  # builds a storage, not a KirbyStorage
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> DagsterStorage:
        settings = Settings()
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))
        if settings.dagster_database_url:
            return _pooled(sqlalchemy_url(settings.dagster_database_url), inst_data)
        if not settings.database_url:
            server = embedded.start(
                settings.home,
                (embedded.REALTIME_DATABASE, embedded.TRAINING_DATABASE, DAGSTER_DATABASE),
            )
            return _pooled(sqlalchemy_url(with_database(server, DAGSTER_DATABASE)), inst_data)
        base_dir = (settings.home / "dagster").resolve()
        return DagsterSqliteStorage.from_local(str(base_dir), inst_data=inst_data)


def _pooled(url: str, inst_data: ConfigurableClassData) -> DagsterPostgresStorage:
    """dagster-postgres with one kept connection per storage instead of one per statement."""
    storage = DagsterPostgresStorage(url, inst_data=inst_data)
    for part in (storage.event_log_storage, storage.run_storage, storage.schedule_storage):
        # A statement timeout of 0 keeps PostgreSQL's default (none), as before; the webserver
        # sets its own again when it starts.
        part.optimize_for_webserver(
            statement_timeout=0, pool_recycle=3600, max_overflow=POOL_MAX_OVERFLOW
        )
    return storage
