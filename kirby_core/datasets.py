"""The market datasets, declared once: tables, series, keys, columns, checks and names.

Every market table (candles, funding rates, open interest) is one `Dataset` here; the writer,
the COPY reader and lake schema, the API's column lists and the NOTIFY channels derive from
it, and `tests/db/test_datasets.py` compares it with the migrated database (columns, types,
NOT NULL, CHECK constraints, primary key), so neither can change without the other. The
training database holds the same tables with the same schema.

One naming rule: a column has one name in the database, in the lake's Parquet files, in the
row types the exchange parsers produce (`kirby_core.models`) and in the writer. Only the API
may show another, and then the column carries it (`api_name`: candles' `trade_count` is
`num_trades` in the API). A dataset is named after its table everywhere (lake directory,
NOTIFY channel, outage records, Dagster, the CLI); the API's URLs and WebSocket channels use
`api_name` (`funding` for funding rates), and the CLI also accepts the declared `aliases`.

Every row is keyed by (series, time): the series is a starlisting (candles) or a trading
pair (funding rates, open interest), `time` is minute-aligned UTC. A CHECK is a list of
(predicate, reason) parts: the database holds their conjunction as one constraint and the
writer tests each part on its own, so a refused row says which rule it broke. Predicates
use SQL CHECK semantics: a part fails only when it is false (NULL passes).

What this module does not do: talk to a database or build SQL beyond the DDL fragments
below (identifiers only, all from these declarations).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from kirby_core.errors import InvalidRequest

SeriesKind = Literal["starlisting", "trading_pair"]
PgType = Literal["numeric", "integer", "timestamptz"]


@dataclass(frozen=True)
class Column:
    """A value column of a market table."""

    name: str
    """The name in the database, the lake, the row types and the writer."""
    pg_type: PgType
    nullable: bool = True
    api_name: str | None = None
    """The API's public name, when it differs from `name`."""

    @property
    def api(self) -> str:
        return self.api_name or self.name


@dataclass(frozen=True)
class Check:
    """A CHECK constraint: the conjunction of its parts, each with the writer's reason."""

    name: str
    """The constraint's name in the database."""
    parts: tuple[tuple[str, str], ...]
    """(SQL predicate, why a row fails it), tested by the writer in this order."""

    @property
    def predicate(self) -> str:
        return " AND ".join(predicate for predicate, _ in self.parts)


TIME = Column("time", "timestamptz", nullable=False)
"""The second key column of every market table: the minute (a candle's open time), UTC."""

_SERIES_TABLES: dict[SeriesKind, str] = {
    "starlisting": "starlistings",
    "trading_pair": "trading_pairs",
}


@dataclass(frozen=True)
class Dataset:
    """A market table and everything Kirby says about its columns."""

    name: str
    """The table's name, and the dataset's name everywhere outside the API."""
    api_name: str
    """Its name in the API's URLs and on the WebSocket."""
    series: SeriesKind
    columns: tuple[Column, ...]
    """Value columns, after the key (series, time), in table order."""
    checks: tuple[Check, ...]
    """Value checks, in the order the writer tests them (after the key's own)."""
    aliases: tuple[str, ...] = ()
    """Shorter spellings the CLI also accepts (the original scripts' `funding`, `oi`)."""

    @property
    def series_column(self) -> str:
        return f"{self.series}_id"

    @property
    def series_table(self) -> str:
        return _SERIES_TABLES[self.series]

    @property
    def per_starlisting(self) -> bool:
        """Whether series are starlistings (one per interval) rather than trading pairs."""
        return self.series == "starlisting"

    @property
    def key(self) -> tuple[str, str]:
        return (self.series_column, TIME.name)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The value columns' names."""
        return tuple(column.name for column in self.columns)

    @property
    def all_columns(self) -> tuple[str, ...]:
        """Every column in table order: series, time, values."""
        return (*self.key, *self.column_names)

    @property
    def required(self) -> tuple[Column, ...]:
        """Value columns the table declares NOT NULL."""
        return tuple(column for column in self.columns if not column.nullable)

    @property
    def time_check(self) -> Check:
        """The key's own check: times are whole minutes."""
        return Check(
            f"{self.name}_time_minute_aligned",
            (("time = date_trunc('minute', time)", "time not minute-aligned"),),
        )

    @property
    def all_checks(self) -> tuple[Check, ...]:
        """Every CHECK constraint of the table, as the database should hold it."""
        return (*self.checks, self.time_check)

    @property
    def notify_channel(self) -> str:
        """The PostgreSQL NOTIFY channel announcing the table's changed rows."""
        return f"kirby_{self.name}"

    def create_table(self, table: str) -> str:
        """DDL of a table shaped as the declaration says (no foreign key, no indexes):
        what the schema test compares the migrated table with."""
        lines = [
            f"{self.series_column} integer NOT NULL",
            f"{TIME.name} {TIME.pg_type} NOT NULL",
            *(f"{c.name} {c.pg_type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns),
            f"PRIMARY KEY ({', '.join(self.key)})",
            *(f"CONSTRAINT {check.name} CHECK ({check.predicate})" for check in self.all_checks),
        ]
        return f"CREATE TABLE {table} ({', '.join(lines)})"


CANDLES = Dataset(
    name="candles",
    api_name="candles",
    series="starlisting",
    columns=(
        Column("open", "numeric", nullable=False),
        Column("high", "numeric", nullable=False),
        Column("low", "numeric", nullable=False),
        Column("close", "numeric", nullable=False),
        Column("volume", "numeric", nullable=False),
        Column("trade_count", "integer", api_name="num_trades"),
    ),
    checks=(
        Check(
            "candles_ohlc_consistent",
            (
                ("low <= high", "low above high"),
                ("high >= open AND high >= close", "high below open or close"),
                ("low <= open AND low <= close", "low above open or close"),
            ),
        ),
        Check("candles_price_positive", (("low > 0", "non-positive price"),)),
        Check("candles_volume_non_negative", (("volume >= 0", "negative volume"),)),
        Check("candles_trade_count_non_negative", (("trade_count >= 0", "negative trade count"),)),
    ),
)

FUNDING_RATES = Dataset(
    name="funding_rates",
    api_name="funding",
    aliases=("funding",),
    series="trading_pair",
    columns=(
        Column("settled_funding_rate", "numeric"),
        Column("settled_premium", "numeric"),
        Column("predicted_funding_rate", "numeric"),
        Column("premium", "numeric"),
        Column("mark_price", "numeric"),
        Column("oracle_price", "numeric"),
        Column("mid_price", "numeric"),
        Column("next_funding_time", "timestamptz"),
    ),
    checks=(
        Check(
            "funding_rates_prices_positive",
            (("mark_price > 0 AND oracle_price > 0 AND mid_price > 0", "non-positive price"),),
        ),
    ),
)

OPEN_INTEREST = Dataset(
    name="open_interest",
    api_name="open_interest",
    aliases=("oi",),
    series="trading_pair",
    columns=(
        Column("open_interest", "numeric"),
        Column("notional", "numeric"),
        Column("day_base_volume", "numeric"),
        Column("day_notional_volume", "numeric"),
    ),
    checks=(
        Check(
            "open_interest_non_negative",
            (
                ("open_interest >= 0 AND notional >= 0", "negative open interest"),
                ("day_base_volume >= 0 AND day_notional_volume >= 0", "negative volume"),
            ),
        ),
    ),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (CANDLES, FUNDING_RATES, OPEN_INTEREST)}
"""Every market dataset by name (= table name), in a fixed order."""

RECORDED_DATASETS: tuple[str, ...] = (*DATASETS, "trades", "books")
"""What an outage, a backfill report or a change event may name: the minute datasets above,
the trade tape (`trades`) and the order-book samples (`books`), which are not minute-keyed and
so not `Dataset`s. The database's checks hold the same list (migration 0009)."""

UNPACED_DATASETS: frozenset[str] = frozenset({"trades"})
"""Recorded datasets with no cadence: a row is an event (a trade), so a stretch without rows
is a quiet market as often as lag; whether the series is watched is its exchange's feed
state (/status), and which of its minutes are quiet is coverage's ("no trades")."""


def spellings(names: Iterable[str] = DATASETS) -> list[str]:
    """What the CLI accepts for the datasets `names`: each name, then its aliases."""
    return [spelling for name in names for spelling in (name, *DATASETS[name].aliases)]


def dataset_named(spelling: str) -> Dataset:
    """The dataset a name or alias means; `InvalidRequest` naming what is allowed."""
    for dataset in DATASETS.values():
        if spelling in (dataset.name, *dataset.aliases):
            return dataset
    raise InvalidRequest(f"unknown dataset {spelling!r}; expected one of {', '.join(spellings())}")
