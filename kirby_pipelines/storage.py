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
"""

from __future__ import annotations

from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from kirby_core.db import embedded
from kirby_core.db.urls import sqlalchemy_url, with_database
from kirby_core.settings import Settings

DAGSTER_DATABASE = "kirby_dagster"


class KirbyStorage(DagsterStorage, ConfigurableClass):
    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> DagsterStorage:
        settings = Settings()
        if settings.dagster_database_url:
            return DagsterPostgresStorage(
                sqlalchemy_url(settings.dagster_database_url), inst_data=inst_data
            )
        if not settings.database_url:
            server = embedded.start(
                settings.home,
                (embedded.REALTIME_DATABASE, embedded.TRAINING_DATABASE, DAGSTER_DATABASE),
            )
            url = sqlalchemy_url(with_database(server, DAGSTER_DATABASE))
            return DagsterPostgresStorage(url, inst_data=inst_data)
        base_dir = (settings.home / "dagster").resolve()
        return DagsterSqliteStorage.from_local(str(base_dir), inst_data=inst_data)
