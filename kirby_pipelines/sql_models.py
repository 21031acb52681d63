"""dbt_like_sql: SQL models over the lake, loaded from files and run by DuckDB.

A model is one `.sql` file in `dbt_like_sql/models/`: a header comment, then one SELECT.
`{{ ref('name') }}` names another model or a lake table (`lake_candles`, ...); the refs
are the model's dependencies (and its Dagster asset's deps). `{{ columns('lake_candles') }}`
(or `{{ columns('lake_candles', 'c') }}`, each name prefixed `c.`) is the lake table's value
columns, from their one declaration in `kirby_core.datasets`. Venues come from the exchange
registry (`kirby_core.exchanges.registry`), never from a list in the SQL:
`{{ venues('spot') }}` is the exchanges declaring that market type (`venues('spot', 'perps')`:
declaring all of them) as quoted names, sorted, for an `IN (...)` or a `PIVOT ... IN (...)`;
`{{ venue_table() }}` is a table of every declared (exchange, market_type) with
`settlements_per_hour`, how many of its funding settlements fall in an hour (exact DECIMAL:
0.125 for 8-hourly funding); `{{ header('field') }}` is a header line's value as an SQL
string (a lowercase name: `-- reference_venue: binance`). The header must say::

    -- <name>: what the model is, in one line
    -- grain: what one row is
    -- key: the columns that identify a row
    -- upstreams: every ref, comma-separated (checked against the body)
    -- partition_by: the output's hive path columns, ending with `date`

Each run covers a range of days: the SELECT reads `$start_date` and `$end_date` (DATE,
inclusive) and must return the `partition_by` columns. A ref partitioned by `date` shows the
run only those days' files, so a run costs the same in a lake of a month or of ten years
(refs without `date=` directories, like `lake_series`, are read whole). The output replaces
those days under `<lake>/models/<name>/` (hive-partitioned Parquet, one file per
partition). Nothing here builds SQL from values: refs become view names, days are bind
parameters, and the only literals written in are the registry's and the header's names,
each checked to be a lowercase identifier.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from kirby_core.errors import ConfigError
from kirby_core.exchanges.registry import EXCHANGES
from kirby_core.lake import LAKE_DATASETS, read_files, remove_directory
from kirby_core.locations import Location
from kirby_core.timeutil import INTERVAL_SECONDS

MODELS_DIR = Path(__file__).resolve().parent.parent / "dbt_like_sql" / "models"
REQUIRED_HEADER = ("grain", "key", "upstreams", "partition_by")
_REF = re.compile(r"\{\{\s*ref\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\)\s*\}\}")
_COLUMNS = re.compile(
    r"\{\{\s*columns\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]"
    r"(?:\s*,\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"])?\s*\)\s*\}\}"
)
_VENUES = re.compile(r"\{\{\s*venues\(\s*((?:['\"][A-Za-z_]+['\"]\s*,?\s*)+)\)\s*\}\}")
_VENUE_TABLE = re.compile(r"\{\{\s*venue_table\(\s*\)\s*\}\}")
_HEADER_VALUE = re.compile(r"\{\{\s*header\(\s*['\"]([a-z_]+)['\"]\s*\)\s*\}\}")
_QUOTED = re.compile(r"['\"]([A-Za-z_]+)['\"]")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADER = re.compile(r"^--\s*([a-z_]+):\s*(.*)$")
MAX_PARTITIONS = 100_000


@dataclass(frozen=True)
class SqlModel:
    name: str
    path: Path
    description: str
    header: Mapping[str, str]
    body: str
    refs: tuple[str, ...]

    @property
    def partition_by(self) -> tuple[str, ...]:
        return _split(self.header["partition_by"])

    @property
    def key(self) -> tuple[str, ...]:
        return _split(self.header["key"])

    def render(self) -> str:
        """The SELECT with each ref replaced by the (quoted) name of its DuckDB view, each
        `columns(...)` by the column list it names, `venues(...)` and `venue_table()` by the
        registry's venues and `header(...)` by the header's value."""
        body = _COLUMNS.sub(lambda m: _column_list(m.group(1), m.group(2)), self.body)
        body = _VENUES.sub(lambda m: _venue_list(_QUOTED.findall(m.group(1))), body)
        body = _VENUE_TABLE.sub(lambda _: _venue_table(), body)
        body = _HEADER_VALUE.sub(
            lambda m: _header_literal(self.path, self.header, m.group(1)), body
        )
        return _REF.sub(lambda m: f'"{m.group(1)}"', body)


def _column_list(ref: str, alias: str | None) -> str:
    """Value columns of the lake table `ref` (`lake_<lake dataset>`), in table order."""
    dataset = LAKE_DATASETS.get(ref.removeprefix("lake_")) if ref.startswith("lake_") else None
    if dataset is None:
        known = ", ".join(f"lake_{name}" for name in LAKE_DATASETS)
        raise ConfigError(f"columns({ref!r}): not a lake table (known: {known})")
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{name}" for name in dataset.source.column_names)


def declared_venues() -> list[tuple[str, str, Decimal]]:
    """(exchange, market type, funding settlements per hour) of every declared venue, sorted.
    The names become SQL literals: each must be a plain lowercase identifier."""
    venues = []
    for name, declaration in sorted(EXCHANGES.items()):
        seconds = Decimal(INTERVAL_SECONDS[declaration.funding_interval])
        per_hour = (Decimal(3600) / seconds).quantize(Decimal("0.000001"))
        if per_hour * seconds != 3600:
            raise ConfigError(
                f"{name}: funding every {declaration.funding_interval} is not a whole number "
                "of millionths of settlements per hour"
            )
        for market_type in sorted(declaration.market_types):
            for value in (name, market_type):
                if not _NAME.match(value):
                    raise ConfigError(f"venue name {value!r} is not a lowercase identifier")
            venues.append((name, market_type, per_hour))
    return venues


def venue_names(market_types: Sequence[str]) -> list[str]:
    """The exchanges declaring every one of `market_types`, sorted."""
    venues = declared_venues()
    known = sorted({m for _, m, _ in venues})
    unknown = [m for m in market_types if m not in known]
    if unknown:
        raise ConfigError(
            f"venues({', '.join(map(repr, market_types))}): unknown market type "
            f"{unknown[0]!r} (declared: {', '.join(known)})"
        )
    by_exchange: dict[str, set[str]] = {}
    for exchange, market_type, _ in venues:
        by_exchange.setdefault(exchange, set()).add(market_type)
    names = [e for e, declared in by_exchange.items() if declared.issuperset(market_types)]
    if not names:
        raise ConfigError(f"venues({', '.join(map(repr, market_types))}): no exchange has all")
    return names


def _venue_list(market_types: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in venue_names(market_types))


def _venue_table() -> str:
    rows = ", ".join(
        f"('{exchange}', '{market_type}', CAST('{per_hour}' AS DECIMAL(18, 6)))"
        for exchange, market_type, per_hour in declared_venues()
    )
    columns = "venue(exchange, market_type, settlements_per_hour)"
    return f"(SELECT * FROM (VALUES {rows}) AS {columns})"  # noqa: S608  # registry names


def _header_literal(path: Path, header: Mapping[str, str], field: str) -> str:
    value = header.get(field)
    if value is None or not _NAME.match(value):
        raise ConfigError(
            f"{path}: header({field!r}) needs a header line '-- {field}: <lowercase name>'"
            f" (found {value!r})"
        )
    return f"'{value}'"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load_models(directory: Path = MODELS_DIR, sources: tuple[str, ...] = ()) -> list[SqlModel]:
    """Every model in `directory`, upstream before downstream. `sources` are the names refs
    may use besides models (the lake tables); anything else is a `ConfigError`."""
    models = {m.name: m for m in (_parse(path) for path in sorted(directory.glob("*.sql")))}
    for model in models.values():
        for ref in model.refs:
            if ref not in models and ref not in sources:
                known = ", ".join(sorted({*models, *sources}))
                raise ConfigError(f"{model.path}: unknown ref {ref!r}; known: {known}")
    ordered: list[SqlModel] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            raise ConfigError(f"{models[name].path}: refs form a cycle through {name!r}")
        if name not in models or models[name] in ordered:
            return
        visiting.add(name)
        for ref in models[name].refs:
            visit(ref)
        visiting.discard(name)
        ordered.append(models[name])

    for name in models:
        visit(name)
    return ordered


def _parse(path: Path) -> SqlModel:
    text = path.read_text()
    lines = text.splitlines()
    header: dict[str, str] = {}
    description = ""
    for index, line in enumerate(lines):  # the header: `-- field: value` lines at the top
        match = _HEADER.match(line)
        if not match:
            break
        field, value = match.groups()
        if index == 0:
            if field != path.stem:
                raise ConfigError(f"{path}: the header must start with '-- {path.stem}: ...'")
            description = value.strip()
        else:
            header[field] = value.strip()
    missing = [f for f in REQUIRED_HEADER if f not in header]
    if missing:
        raise ConfigError(
            f"{path}: header lacks {', '.join(missing)} (required: grain, key, "
            "upstreams, partition_by)"
        )
    refs = tuple(dict.fromkeys(_REF.findall(text)))
    declared = set(_split(header["upstreams"]))
    if declared != set(refs):
        raise ConfigError(
            f"{path}: header upstreams ({', '.join(sorted(declared))}) differ from the refs "
            f"in the body ({', '.join(sorted(refs))})"
        )
    if _split(header["partition_by"])[-1:] != ("date",):
        raise ConfigError(f"{path}: partition_by must end with date")
    for parameter in ("$start_date", "$end_date"):
        if parameter not in text:
            raise ConfigError(f"{path}: the query must filter on {parameter}")
    for ref, _ in _COLUMNS.findall(text):
        _column_list(ref, None)  # an unknown table fails the load, not the run
    for market_types in _VENUES.findall(text):
        _venue_list(_QUOTED.findall(market_types))  # so does an unknown market type
    for field in _HEADER_VALUE.findall(text):
        _header_literal(path, header, field)  # and a header value it lacks
    return SqlModel(path.stem, path, description, header, text, refs)


@dataclass(frozen=True)
class Relation:
    """Where a ref's rows live: Parquet under the lake, and the schema when there are none
    yet (then the view is an empty table of that schema)."""

    directory: str
    """Path under the lake root (`candles`, `models/daily_coverage`)."""
    empty_schema: pa.Schema | None = None


@dataclass(frozen=True)
class ModelRun:
    rows: int
    rows_by_date: dict[date, int]
    files: int


def run_model(
    model: SqlModel,
    relations: Mapping[str, Relation],
    lake: Location,
    start: date,
    end: date,
) -> ModelRun:
    """Run `model` for days [start, end] and replace those days of its output."""
    days = _days(start, end)
    with open_relations(model.refs, relations, lake, start, end) as con:
        table = con.sql(
            model.render(), params={"start_date": start, "end_date": end}
        ).to_arrow_table()
    missing = [c for c in model.partition_by if c not in table.column_names]
    if missing:
        raise ConfigError(f"{model.path}: the query does not return {', '.join(missing)}")
    output = lake.path("models", model.name)
    for stale in _walk(lake, output, days).date_directories:  # rows no longer produced go too
        remove_directory(lake, stale)
    counts = pc.value_counts(table.column("date")).to_pylist() if table.num_rows else []
    if table.num_rows:
        partition_schema = pa.schema([table.schema.field(c) for c in model.partition_by])
        ds.write_dataset(
            table,
            output,
            filesystem=None if lake.is_local else lake.fs,
            format="parquet",
            partitioning=ds.partitioning(partition_schema, flavor="hive"),
            basename_template="part-{i}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            max_partitions=MAX_PARTITIONS,
        )
    rows_by_date = {c["values"]: c["counts"] for c in counts}
    files = table.group_by(list(model.partition_by)).aggregate([]).num_rows
    return ModelRun(table.num_rows, rows_by_date, files)


def _days(start: date, end: date) -> set[str]:
    return {(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)}


@contextmanager
def open_relations(
    refs: Sequence[str],
    relations: Mapping[str, Relation],
    lake: Location,
    start: date,
    end: date,
    optional: Sequence[str] = (),
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with one view per ref (named as the ref), showing days [start,
    end] of each date-partitioned one: what a model run reads, for the models' checks too.
    A ref in `optional` that has no files gets no view (the others: a `ConfigError`)."""
    days = _days(start, end)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for ref in refs:
            try:
                _create_view(con, ref, relations[ref], lake, days)
            except ConfigError:
                if ref not in optional:
                    raise
        yield con


def _create_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    relation: Relation,
    lake: Location,
    days: set[str],
) -> None:
    root = lake.path(relation.directory)
    found = _walk(lake, root, days)
    if found.files:
        # Every file of a relation has the same schema (written by one exporter), so DuckDB
        # reads one footer; the hive values in the paths become columns.
        read_files(con, lake, found.files, root).create_view(name)
        return
    sample = next(iter(lake.fs.glob(f"{root}/**/*.parquet")), None) if found.dated else None
    if sample is not None:  # partitioned by date, nothing on these days: an empty view of it
        read_files(con, lake, [str(sample)], root).limit(0).create_view(name)
    elif relation.empty_schema is not None:
        con.from_arrow(relation.empty_schema.empty_table()).create_view(name)
    else:
        raise ConfigError(f"{name} has no files under {root}: materialize it first")


@dataclass(frozen=True)
class _Found:
    files: list[str]
    """Parquet files, only those under `date=` directories of the days asked."""
    date_directories: list[str]
    """The `date=` directories of the days asked."""
    dated: bool
    """Whether there are `date=` directories at all (else every file was taken)."""


def _walk(lake: Location, root: str, days: set[str]) -> _Found:
    """What `root` holds for `days`. Pruning while walking keeps the cost to the days asked,
    not to the size of the lake (fsspec's walk, like os.walk, prunes what is removed from
    the directory list)."""
    files: list[str] = []
    date_directories: list[str] = []
    dated = False
    walk = os.walk(root) if lake.is_local else lake.fs.walk(root, topdown=True)
    for directory, subdirectories, names in walk:
        if any(d.startswith("date=") for d in subdirectories):
            dated = True
            subdirectories[:] = [
                d for d in subdirectories if not d.startswith("date=") or d[5:] in days
            ]
            date_directories += [
                os.path.join(directory, d) for d in subdirectories if d.startswith("date=")
            ]
        files += [os.path.join(directory, n) for n in names if n.endswith(".parquet")]
    return _Found(sorted(files), date_directories, dated)
