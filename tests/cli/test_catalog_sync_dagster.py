"""`kirby catalog sync` records the catalog asset as materialized in DAGSTER_HOME, so the
Materialize dialog of its downstream assets has no "upstream never materialized" warning."""

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from kirby_cli.main import cli
from kirby_core.db.urls import DatabaseUrls
from tests.cli.test_cli import _env, clean  # noqa: F401  (the CLI commits for real)


@pytest.mark.parametrize(
    ("database", "asset", "partitions"),
    [
        ("realtime", "realtime_catalog", {"starlistings": 8, "trading_pairs": 2}),
        ("training", "training_catalog", {"training_starlistings": 24}),
    ],
)
def test_sync_materializes_the_catalog_asset(
    database_urls: DatabaseUrls,
    clean,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    asset: str,
    partitions: dict[str, int],
) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    result = CliRunner().invoke(
        cli, ["catalog", "sync", "--database", database], env=_env(database_urls)
    )
    assert result.exit_code == 0, result.output
    assert f"Dagster: {asset} materialized" in result.output
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None
        assert event.asset_materialization.description == "kirby catalog sync"
        assert {
            name: len(instance.get_dynamic_partitions(name)) for name in partitions
        } == partitions


def test_sync_without_dagster_home_says_so(
    database_urls: DatabaseUrls,
    clean,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(cli, ["catalog", "sync"], env=_env(database_urls))
    assert result.exit_code == 0, result.output
    assert "Dagster: DAGSTER_HOME not set, nothing recorded" in result.output
