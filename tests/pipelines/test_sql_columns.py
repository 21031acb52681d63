"""`{{ columns('lake_…') }}` in SQL models: the lake table's declared value columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from kirby_core.datasets import FUNDING_RATES
from kirby_core.errors import ConfigError
from kirby_pipelines.sql_models import _parse

HEADER = """-- m: a model
-- grain: one row
-- key: time
-- upstreams: lake_funding_rates
-- partition_by: date
"""


def _model(tmp_path: Path, select: str) -> Path:
    path = tmp_path / "m.sql"
    body = f"SELECT {select} FROM {{{{ ref('lake_funding_rates') }}}}"
    path.write_text(HEADER + body + " WHERE date BETWEEN $start_date AND $end_date\n")
    return path


def test_columns_render_the_declared_list(tmp_path):
    model = _parse(_model(tmp_path, "time, {{ columns('lake_funding_rates', 'f') }}"))
    expected = ", ".join(f"f.{name}" for name in FUNDING_RATES.column_names)
    assert f"SELECT time, {expected} FROM" in model.render()


def test_an_unknown_table_fails_the_load(tmp_path):
    with pytest.raises(ConfigError, match="not a lake table"):
        _parse(_model(tmp_path, "{{ columns('lake_tickers') }}"))
