"""Retention of market data, per database, dataset and candle interval.

Two settings, one per database: `KIRBY_RETENTION` (realtime) and `KIRBY_TRAINING_RETENTION`
(training; unset keeps all of its history). Each is a comma-separated list of
`<dataset>[:<interval>]=<days>d`, e.g. `candles:1m=30d,candles=365d,trades=30d`:

- `<dataset>=<N>d` (any of `candles`, `funding_rates`, `open_interest`, `trades`, `books`) is
  TimescaleDB's own retention policy on that table: it drops whole chunks once their newest
  possible row is older than N days;
- `candles:<interval>=<N>d` keeps that candle interval N days. One candles table holds every
  interval, so a chunk cannot be dropped for one of them: a TimescaleDB job
  (`kirby_drop_expired_candles`, created by migration 0005) deletes that interval's rows
  older than N days, hourly. An interval kept longer than the table's own rule would be
  dropped with its chunks anyway, so that is refused.
- `trades=<N>d` also works without TimescaleDB: `trades` is then partitioned by day
  (`kirby_core.db.trades`), and the daily partitions whose every row is older than N days
  are dropped, nothing else. With TimescaleDB its expired chunks are dropped at once too
  (`drop_chunks`), besides the policy, so either way a migrate leaves none behind.
- `books=<N>d` likewise: `books` (order-book samples, `kirby_core.db.books`) is partitioned
  by day without TimescaleDB and a hypertable with it; the same two paths drop its expired
  days. `book_integrity` (the counters per minute) is not retained by it.

`kirby db migrate` reconciles the server with the setting every time (`apply`): policies
and the job are added, changed or removed to match, so unsetting a rule removes it. On a
database whose market tables are plain PostgreSQL tables (no TimescaleDB) a configured
retention of candles, funding rates or open interest is refused with a clear error rather
than silently ignored; delete old rows yourself there. `plan` is the pure part (what to
change, from what is installed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from sqlalchemy import Connection

from kirby_core.datasets import DATASETS
from kirby_core.db.books import BOOKS_BY_DAY
from kirby_core.db.trades import TRADES_BY_DAY
from kirby_core.errors import ConfigError
from kirby_core.settings import Database, Settings
from kirby_core.timeutil import INTERVAL_SECONDS

SETTING = {"realtime": "KIRBY_RETENTION", "training": "KIRBY_TRAINING_RETENTION"}
DELETE_PROCEDURE = "kirby_drop_expired_candles"
DELETE_SCHEDULE = "1 hour"
_RULE = re.compile(r"(?P<dataset>[a-z_]+)(?::(?P<interval>\w+))?=(?P<days>\d+)d")
_FORMAT = "<dataset>[:<interval>]=<days>d, comma-separated, e.g. candles:1m=30d,funding_rates=90d"
PARTITIONED = {p.table: p for p in (TRADES_BY_DAY, BOOKS_BY_DAY)}
"""Tables partitioned by day on plain PostgreSQL (retention drops their expired days there;
with TimescaleDB `drop_chunks` drops them at once besides the policy)."""
RETAINED_TABLES = (*DATASETS, *PARTITIONED)
"""The tables a `<dataset>=<N>d` rule may name."""


@dataclass(frozen=True)
class Retention:
    tables: dict[str, int] = field(default_factory=dict)
    """Table -> days: TimescaleDB's retention policy on the whole table."""
    candle_intervals: dict[str, int] = field(default_factory=dict)
    """Candle interval name -> days: rows deleted by the `kirby_drop_expired_candles` job."""

    def __bool__(self) -> bool:
        return bool(self.tables or self.candle_intervals)


@dataclass(frozen=True)
class Installed:
    """What the server has now."""

    tables: dict[str, int]
    """Table -> days of its retention policy (tables without one are absent)."""
    delete_jobs: dict[int, dict[str, int]]
    """Job id -> candle interval days, of each `kirby_drop_expired_candles` job."""


def parse_retention(text: str | None, setting: str) -> Retention:
    """The rules of a retention setting; `ConfigError` naming the bad part otherwise."""
    tables: dict[str, int] = {}
    intervals: dict[str, int] = {}
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        match = _RULE.fullmatch(part)
        if match is None:
            raise ConfigError(f"{setting}: {part!r} is not a retention rule; expected {_FORMAT}")
        dataset, interval, days = match["dataset"], match["interval"], int(match["days"])
        if dataset not in RETAINED_TABLES:
            allowed = ", ".join(RETAINED_TABLES)
            raise ConfigError(
                f"{setting}: unknown dataset {dataset!r} in {part!r}; allowed: {allowed}"
            )
        if days <= 0:
            raise ConfigError(f"{setting}: {part!r} keeps nothing; use at least 1d")
        if interval is not None and dataset != "candles":
            raise ConfigError(
                f"{setting}: {part!r}: only candles have intervals; write {dataset}=<days>d"
            )
        if interval is not None and interval not in INTERVAL_SECONDS:
            raise ConfigError(
                f"{setting}: unknown interval {interval!r} in {part!r};"
                f" allowed: {', '.join(INTERVAL_SECONDS)}"
            )
        target, key = (intervals, interval) if interval is not None else (tables, dataset)
        if key in target:
            raise ConfigError(f"{setting}: {part!r} repeats a rule for {key}; give it once")
        target[key] = days
    table_days = tables.get("candles")
    longer = {name: days for name, days in intervals.items() if table_days and days > table_days}
    if longer:
        name, days = next(iter(longer.items()))
        raise ConfigError(
            f"{setting}: candles:{name}={days}d is longer than candles={table_days}d, whose"
            f" chunks are dropped for every interval; raise candles= or shorten candles:{name}"
        )
    return Retention(tables, intervals)


def for_database(settings: Settings, database: Database, shared: bool = False) -> Retention:
    """The retention `settings` ask of `database`. `shared`: one database serves both, and
    only KIRBY_RETENTION may describe it."""
    if shared and settings.training_retention:
        raise ConfigError(
            "KIRBY_TRAINING_RETENTION is set but the training and realtime databases are one"
            " database; set KIRBY_RETENTION only, or give training its own database"
        )
    text = settings.retention if database == "realtime" else settings.training_retention
    return parse_retention(text, SETTING[database])


def plan_statements(wanted: Retention, installed: Installed) -> list[str]:
    """Statements that make `installed` match `wanted` (none when it already does)."""
    statements: list[str] = []
    for table in RETAINED_TABLES:  # identifiers from the declarations only, days are ints
        have, want = installed.tables.get(table), wanted.tables.get(table)
        if have == want:
            continue
        if have is not None:
            statements.append(f"SELECT remove_retention_policy('{table}')")
        if want is not None:
            statements.append(
                f"SELECT add_retention_policy('{table}', drop_after => interval '{want} days')"
            )
    jobs = sorted(installed.delete_jobs.items())
    if wanted.candle_intervals:
        config = json.dumps({"intervals": wanted.candle_intervals}, sort_keys=True)
        if not jobs:
            statements.append(
                f"SELECT add_job('{DELETE_PROCEDURE}', interval '{DELETE_SCHEDULE}',"
                f" config => '{config}'::jsonb)"
            )
        elif jobs[0][1] != wanted.candle_intervals:
            statements.append(f"SELECT alter_job({jobs[0][0]}, config => '{config}'::jsonb)")
        jobs = jobs[1:]
    statements.extend(f"SELECT delete_job({job_id})" for job_id, _ in jobs)
    return statements


def hypertables(connection: Connection) -> set[str]:
    """The market tables that are hypertables (none without the extension)."""
    has_extension = connection.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).scalar_one()
    if not has_extension:
        return set()
    rows = connection.exec_driver_sql(
        "SELECT hypertable_name FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = 'public'"
    )
    return {name for (name,) in rows} & set(RETAINED_TABLES)


def installed(connection: Connection) -> Installed:
    rows = connection.exec_driver_sql(
        "SELECT job_id, proc_name, hypertable_name, config FROM timescaledb_information.jobs"
        " WHERE (proc_name = 'policy_retention' AND hypertable_schema = 'public')"
        " OR proc_name = %(procedure)s",
        {"procedure": DELETE_PROCEDURE},
    )
    tables: dict[str, int] = {}
    jobs: dict[int, dict[str, int]] = {}
    for job_id, procedure, table, config in rows:
        if procedure == DELETE_PROCEDURE:
            jobs[job_id] = {k: int(v) for k, v in (config or {}).get("intervals", {}).items()}
        else:
            tables[table] = _days(connection, config["drop_after"])
    return Installed(tables, jobs)


def _days(connection: Connection, drop_after: str) -> int:
    """Whole days of a policy's `drop_after` (e.g. '30 days'); others never match a rule."""
    seconds = connection.exec_driver_sql(
        "SELECT extract(epoch FROM %(value)s::interval)", {"value": drop_after}
    ).scalar_one()
    return int(seconds // 86400) if seconds % 86400 == 0 else -1


def apply(connection: Connection, wanted: Retention, setting: str) -> list[str]:
    """Reconcile the server with `wanted`; returns the statements run."""
    tables = hypertables(connection)
    if not tables:
        # plain PostgreSQL: only the day-partitioned tables can drop old data whole
        beyond_partitioned = set(wanted.tables) - set(PARTITIONED) or wanted.candle_intervals
        if beyond_partitioned:
            raise ConfigError(
                f"{setting} is set but this database's market tables are plain PostgreSQL"
                " tables: retention of candles, funding_rates and open_interest needs"
                " TimescaleDB hypertables (install timescaledb, add it to"
                " shared_preload_libraries, migrate a new database); only trades=<N>d works"
                f" without it (books=<N>d too). Remove the other rules from {setting}"
            )
        dropped: list[str] = []
        for table, partitions in PARTITIONED.items():
            days = wanted.tables.get(table)
            if days is not None and partitions.is_partitioned(connection):
                dropped += partitions.drop_expired(connection, days)
        return dropped
    statements = plan_statements(wanted, installed(connection))
    for table in PARTITIONED:
        days = wanted.tables.get(table)
        if days is not None and table in tables:
            statements.append(
                f"SELECT drop_chunks('{table}', older_than => interval '{days} days')"
            )
    for statement in statements:
        connection.exec_driver_sql(statement)
    return statements
