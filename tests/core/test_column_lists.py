"""No market table's column list is written outside its declaration (`kirby_core.datasets`).

A column list is every value column of a dataset, in declared order, in one run of source
text (SQL, Python, the SQL models): the shape a copy of the declaration takes. Code that
uses a few columns by meaning (`high >= low`) is not a list. Migrations are history and
keep theirs; the simulator speaks the exchanges' fields, not Kirby's tables; benchmarks'
baselines are written the way their own authors would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kirby_core.datasets import DATASETS, Dataset
from tests.conftest import REPO

_SEPARATOR = r"""[\s,"'`()\[\]]+(?:[a-z_]+\.)?"""
EXEMPT = ("kirby_core/db/migrations/", "kirby_core/datasets.py", "kirby_sim/")


def sources(root: Path) -> list[Path]:
    found = [*root.glob("kirby_*/**/*.py"), *root.glob("dbt_like_sql/**/*.sql")]
    return [p for p in found if not str(p.relative_to(root)).startswith(EXEMPT)]


def column_lists(dataset: Dataset, root: Path) -> list[str]:
    """Where `dataset`'s whole value-column list appears in `root`'s sources."""
    pattern = re.compile(
        r"\b" + _SEPARATOR.join(re.escape(name) for name in dataset.column_names) + r"\b"
    )
    found = []
    for path in sources(root):
        text = path.read_text()
        for match in pattern.finditer(text):
            found.append(f"{path.relative_to(root)}:{text[: match.start()].count(chr(10)) + 1}")
    return found


@pytest.mark.parametrize("dataset", DATASETS.values(), ids=lambda d: d.name)
def test_no_column_list_outside_the_declaration(dataset: Dataset) -> None:
    assert column_lists(dataset, REPO) == []


def test_the_scan_sees_a_written_out_list(tmp_path: Path) -> None:
    planted = tmp_path / "kirby_planted" / "query.py"
    planted.parent.mkdir()
    planted.write_text(
        'SQL = """SELECT o.open_interest, o.notional,\n'
        '    o.day_base_volume, o.day_notional_volume FROM open_interest o"""\n'
    )
    (tmp_path / "kirby_planted" / "uses.py").write_text("ok = high >= low and open > 0\n")
    assert column_lists(DATASETS["open_interest"], tmp_path) == ["kirby_planted/query.py:1"]
    assert column_lists(DATASETS["candles"], tmp_path) == []
