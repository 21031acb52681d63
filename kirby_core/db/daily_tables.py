"""Daily partitions of the high-volume tables (`trades`, `books`), declared once.

On plain PostgreSQL each of these tables is partitioned by RANGE (time), one partition per
UTC day named `<table>_pYYYYMMDD`, made by a SQL function of the table's migration
(`kirby_create_trade_partitions`, `kirby_create_book_partitions`) so the writers and
`kirby db migrate` share one definition; retention drops whole partitions. With TimescaleDB
the tables are hypertables: the functions are no-ops and chunks are TimescaleDB's.

A `DailyPartitions` names one table and its function; everything else (making the days a
batch needs, today's and the coming days' at migrate, listing, expiry, dropping) is here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
from sqlalchemy import Connection

PARTITIONS_AHEAD = 3
"""Days after today whose partitions `kirby db migrate` makes, so live writes rarely wait on
a partition's creation (the writers make any other day they need)."""


def utc_day(time: datetime) -> date:
    return time.astimezone(UTC).date()


def expired_partitions(days: dict[date, str], now: datetime, keep_days: int) -> list[str]:
    """The partitions whose every possible row is older than `keep_days` before `now`: day D
    holds [D, D+1), so it goes once D+1 <= now - keep_days."""
    cutoff = now - timedelta(days=keep_days)
    return [
        name
        for day, name in sorted(days.items())
        if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= cutoff
    ]


@dataclass(frozen=True)
class DailyPartitions:
    """One table's daily partitions."""

    table: str
    create_function: str
    """The migration's SQL function (first_day date, last_day date) -> partitions made."""

    @property
    def prefix(self) -> str:
        return f"{self.table}_p"

    async def create(self, conn: asyncpg.Connection, first: date, last: date) -> int:
        """Make the missing partitions from `first` to `last` (inclusive); returns how many
        were made (0 on a hypertable)."""
        created: int = await conn.fetchval(
            f"SELECT {self.create_function}($1::date, $2::date)", first, last
        )
        return created

    def is_partitioned(self, connection: Connection) -> bool:
        """Whether the table is partitioned (plain PostgreSQL) rather than a hypertable;
        False where it does not exist yet (an older revision)."""
        kind = connection.exec_driver_sql(
            "SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%(table)s)",
            {"table": f"public.{self.table}"},
        ).scalar_one_or_none()
        return kind == "p"

    def create_ahead(self, connection: Connection) -> int:
        """Today's partition (UTC) and the next `PARTITIONS_AHEAD` days'; returns how many
        were made."""
        created: int = connection.exec_driver_sql(
            f"SELECT {self.create_function}(d, d + %(ahead)s)"  # noqa: S608 (a declared name)
            " FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) today",
            {"ahead": PARTITIONS_AHEAD},
        ).scalar_one()
        return created

    def existing(self, connection: Connection) -> dict[date, str]:
        """The table's daily partitions (UTC day -> table name); others are not Kirby's."""
        rows = connection.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%(table)s)",
            {"table": f"public.{self.table}"},
        )
        pattern = re.compile(rf"{self.prefix}(\d{{8}})")
        days: dict[date, str] = {}
        for (name,) in rows:
            match = pattern.fullmatch(name)
            if match:
                days[datetime.strptime(match[1], "%Y%m%d").date()] = name
        return days

    def drop_expired(self, connection: Connection, keep_days: int) -> list[str]:
        """Drop the partitions wholly older than `keep_days`; returns the statements run."""
        now: datetime = connection.exec_driver_sql("SELECT now()").scalar_one()
        statements = [
            f'DROP TABLE public."{name}"'
            for name in expired_partitions(self.existing(connection), now, keep_days)
        ]
        for statement in statements:
            connection.exec_driver_sql(statement)
        return statements
