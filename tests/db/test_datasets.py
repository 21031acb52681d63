"""The dataset declarations (`kirby_core.datasets`) against the migrated databases.

For each dataset a scratch table is created from the declaration alone, and PostgreSQL
describes both it and the migrated table the same way (column names, types as `format_type`
prints them, NOT NULL, primary key, foreign key, CHECK constraints as `pg_get_constraintdef`
prints them, conjuncts in any order), so a migration and a declaration cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import re

import asyncpg
import pytest

from kirby_core import models
from kirby_core.datasets import (
    CANDLES,
    DATASETS,
    FUNDING_RATES,
    OPEN_INTEREST,
    RECORDED_DATASETS,
    Check,
    Dataset,
)


def _conjuncts(definition: str) -> frozenset[str]:
    """`CHECK (((a) AND (b)))` -> {"(a)", "(b)"}: PostgreSQL's text, split at top-level ANDs."""
    body = re.fullmatch(r"CHECK \((.*)\)", definition)
    assert body is not None, definition
    text = body.group(1)
    while text.startswith("(") and _closing(text, 0) == len(text) - 1:
        text = text[1:-1]
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text.startswith(" AND ", i):
            parts.append(text[start:i])
            start = i + 5
    parts.append(text[start:])
    return frozenset(parts)


def _closing(text: str, opening: int) -> int:
    depth = 0
    for i in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return -1


async def _describe(conn: asyncpg.Connection, table: str) -> dict[str, object]:
    """What the declaration must agree with, for one table (schema-qualified or temp)."""
    oid = await conn.fetchval("SELECT $1::regclass::oid", table)
    columns = await conn.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull"
        " FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum",
        oid,
    )
    constraints = await conn.fetch(
        "SELECT conname, contype::text, pg_get_constraintdef(oid) AS definition"
        " FROM pg_constraint WHERE conrelid = $1 AND contype IN ('c', 'f', 'p')",
        oid,
    )
    return {
        "columns": [(r["attname"], r["type"], r["attnotnull"]) for r in columns],
        "primary key": [r["definition"] for r in constraints if r["contype"] == "p"],
        "foreign keys": sorted(r["definition"] for r in constraints if r["contype"] == "f"),
        "checks": {
            r["conname"]: _conjuncts(r["definition"]) for r in constraints if r["contype"] == "c"
        },
    }


async def _declared(conn: asyncpg.Connection, dataset: Dataset) -> dict[str, object]:
    scratch = f"declared_{dataset.name}"
    await conn.execute(f"DROP TABLE IF EXISTS pg_temp.{scratch}")
    await conn.execute(dataset.create_table(f"pg_temp.{scratch}"))
    described = await _describe(conn, f"pg_temp.{scratch}")
    # A temporary table may not reference a permanent one: the series' key is written out.
    described["foreign keys"] = [
        f"FOREIGN KEY ({dataset.series_column}) REFERENCES {dataset.series_table}(id)"
    ]
    return described


@pytest.mark.parametrize("dataset", DATASETS.values(), ids=DATASETS)
async def test_declaration_matches_realtime_database(conn, dataset):
    assert await _declared(conn, dataset) == await _describe(conn, f"public.{dataset.name}")


@pytest.mark.parametrize("dataset", DATASETS.values(), ids=DATASETS)
async def test_declaration_matches_training_database(training_conn, dataset):
    described = await _describe(training_conn, f"public.{dataset.name}")
    assert await _declared(training_conn, dataset) == described


def _retype(dataset: Dataset) -> Dataset:
    first = dataset.columns[0]
    other = "integer" if first.pg_type == "numeric" else "numeric"
    return dataclasses.replace(
        dataset, columns=(dataclasses.replace(first, pg_type=other), *dataset.columns[1:])
    )


def _renull(dataset: Dataset) -> Dataset:
    first = dataset.columns[0]
    return dataclasses.replace(
        dataset,
        columns=(dataclasses.replace(first, nullable=not first.nullable), *dataset.columns[1:]),
    )


def _drop_check_part(dataset: Dataset) -> Dataset:
    check = next(c for c in dataset.checks if len(c.parts) > 1)
    loosened = Check(check.name, check.parts[1:])
    return dataclasses.replace(
        dataset, checks=tuple(loosened if c is check else c for c in dataset.checks)
    )


def _rename_check(dataset: Dataset) -> Dataset:
    first = dataset.checks[0]
    renamed = dataclasses.replace(first, name=f"{first.name}_renamed")
    return dataclasses.replace(dataset, checks=(renamed, *dataset.checks[1:]))


def _add_column(dataset: Dataset) -> Dataset:
    extra = dataclasses.replace(dataset.columns[-1], name="extra")
    return dataclasses.replace(dataset, columns=(*dataset.columns, extra))


@pytest.mark.parametrize(
    ("dataset", "change"),
    [
        (CANDLES, _retype),
        (FUNDING_RATES, _renull),
        (CANDLES, _drop_check_part),
        (OPEN_INTEREST, _drop_check_part),
        (OPEN_INTEREST, _add_column),
        (FUNDING_RATES, _rename_check),
    ],
)
async def test_a_declaration_changed_alone_is_caught(conn, dataset, change):
    changed = change(dataset)
    assert await _declared(conn, changed) != await _describe(conn, f"public.{dataset.name}")


@pytest.mark.parametrize(
    ("dataset", "row_type"),
    [
        (CANDLES, models.CandleRow),
        (FUNDING_RATES, models.FundingRateRow),
        (OPEN_INTEREST, models.OpenInterestRow),
    ],
)
def test_row_types_use_the_declared_names(dataset, row_type):
    """The writer copies rows positionally: their fields are the table's columns, in order."""
    assert row_type._fields == dataset.all_columns


@pytest.mark.parametrize("table", ["collection_outages", "backfill_reports", "change_events"])
async def test_records_name_exactly_the_declared_datasets(conn, table):
    definition = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = $1::regclass AND contype = 'c'"
        " AND pg_get_constraintdef(oid) LIKE '%dataset%'",
        table,
    )
    assert set(re.findall(r"'(\w+)'::text", definition)) == set(RECORDED_DATASETS)
    assert set(DATASETS) < set(RECORDED_DATASETS)
