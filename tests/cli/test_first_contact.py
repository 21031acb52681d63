"""What a new user meets first: `make demo ARGS=…`, the demo's options and its admin key."""

import subprocess
from pathlib import Path

import asyncpg
import click
import pytest

from kirby_api.keys import find_key, revoke_key
from kirby_cli.demo import demo, run_stack
from kirby_cli.stack import ADMIN_KEY_FILE, admin_key
from tests.conftest import REPO


@pytest.mark.parametrize("target", ["demo", "run"])
def test_make_passes_args(target: str) -> None:
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO), target, "ARGS=--api-port 8001 --days 2", "STAMP="],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"kirby {target} --api-port 8001 --days 2" in result.stdout


@pytest.mark.parametrize("command", [demo, run_stack], ids=["demo", "run"])
def test_every_option_has_help(command: click.Command) -> None:
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert options
    assert [o.name for o in options if not o.help] == []


async def test_admin_key_is_saved_and_reused(conn: asyncpg.Connection, tmp_path: Path) -> None:
    first = await admin_key(conn, tmp_path, "kirby demo admin")
    assert (tmp_path / ADMIN_KEY_FILE).read_text().strip() == first
    assert (tmp_path / ADMIN_KEY_FILE).stat().st_mode & 0o077 == 0
    assert await admin_key(conn, tmp_path, "kirby demo admin") == first
    assert len(await conn.fetch("SELECT id FROM api_keys")) == 1

    stored = await find_key(conn, first)
    assert stored is not None and stored.admin
    await revoke_key(conn, stored.id)
    second = await admin_key(conn, tmp_path, "kirby demo admin")
    assert second != first
    assert (tmp_path / ADMIN_KEY_FILE).read_text().strip() == second


async def test_a_saved_key_unknown_to_the_database_is_replaced(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    (tmp_path / ADMIN_KEY_FILE).write_text("kirby_not-a-key-of-this-database\n")
    token = await admin_key(conn, tmp_path, "kirby demo admin")
    assert token.startswith("kirby_") and await find_key(conn, token) is not None


def test_kirby_home_points_the_cli_at_the_demo(tmp_path: Path) -> None:
    """README: `KIRBY_HOME=.kirby-demo kirby …` reads the demo's embedded PostgreSQL."""
    from click.testing import CliRunner

    from kirby_cli.main import cli
    from kirby_core.db import embedded

    home = tmp_path / ".kirby-demo"
    result = CliRunner().invoke(cli, ["db", "status"], env={"KIRBY_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert str(embedded.data_dir(home)) in result.output


def test_the_demo_records_its_catalogs_and_replaces_older_keys(tmp_path: Path) -> None:
    """The stack's GraphQL calls, run by Dagster's own GraphQL schema over the real code
    location: partitions in today's spelling only, and the catalog assets materialized."""
    import json

    import dagster as dg
    import httpx
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from kirby_cli.stack import Stack, StackConfig
    from kirby_core.catalog import StarlistingKey, TradingPairKey
    from kirby_core.db.catalog_store import Starlisting, TradingPair
    from kirby_core.settings import Settings
    from kirby_pipelines.catalogs import DatabaseSeries

    star = Starlisting(1, StarlistingKey("hyperliquid", "BTC", "USD", "perps", "1m"), 1, 60, True)
    pair = TradingPair(1, TradingPairKey("hyperliquid", "BTC", "USD", "perps"), True)
    with (
        dg.instance_for_test() as instance,
        define_out_of_process_context(str(REPO / "workspace.yaml"), None, instance) as context,
    ):

        def graphql(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            result = execute_dagster_graphql(context, body["query"], body["variables"])
            return httpx.Response(200, json={"data": result.data})

        instance.add_dynamic_partitions("starlistings", ["hyperliquid/BTC/USD/perps/1m"])
        stack = Stack(StackConfig(Settings(_env_file=None, home=tmp_path), sim_port=1))
        stack.dagster._http = httpx.Client(
            base_url="http://dagster", transport=httpx.MockTransport(graphql)
        )
        stack.series = [
            DatabaseSeries("realtime", (star,), (pair,)),
            DatabaseSeries("training", (), ()),
        ]
        stack._register_partitions()

        assert instance.get_dynamic_partitions("starlistings") == ["BTC@hyperliquid/USD/perps/1m"]
        assert instance.get_dynamic_partitions("trading_pairs") == ["BTC@hyperliquid/USD/perps"]
        for asset in ("realtime_catalog", "training_catalog"):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event is not None
            assert event.asset_materialization.description == "kirby demo sync"
