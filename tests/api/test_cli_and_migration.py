"""`kirby apikey` / `kirby api serve` as a user runs them, and migration 0002 up and down."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

from kirby_cli.api import api, apikey
from kirby_core.db import migrate
from kirby_core.db.urls import with_database
from tests.conftest import _run


async def test_apikey_create_list_revoke(settings, conn) -> None:
    runner = CliRunner()
    created = await asyncio.to_thread(
        runner.invoke, apikey, ["create", "notebook", "--admin", "--rate-limit", "60"], obj=settings
    )
    assert created.exit_code == 0, created.output
    token = re.search(r"^key: (kirby_\S+)$", created.output, re.MULTILINE).group(1)
    assert "Store it now" in created.output
    row = await conn.fetchrow("SELECT id, name, admin, rate_limit_per_minute FROM api_keys")
    assert (row["name"], row["admin"], row["rate_limit_per_minute"]) == ("notebook", True, 60)

    listed = await asyncio.to_thread(runner.invoke, apikey, ["list"], obj=settings)
    assert token[:12] in listed.output and token not in listed.output
    assert "admin" in listed.output and "active" in listed.output

    revoked = await asyncio.to_thread(
        runner.invoke, apikey, ["revoke", str(row["id"])], obj=settings
    )
    assert revoked.exit_code == 0
    assert "revoked" in revoked.output
    assert await conn.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys") is True

    unknown = await asyncio.to_thread(runner.invoke, apikey, ["revoke", "999"], obj=settings)
    assert unknown.exit_code != 0


def test_help_of_the_new_groups() -> None:
    for group, commands in ((api, ["serve"]), (apikey, ["create", "list", "revoke"])):
        for command in commands:
            result = CliRunner().invoke(group, [command, "--help"])
            assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.slow
async def test_api_serve_runs_a_real_server(settings, catalog, tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KIRBY_")},
        "KIRBY_DATABASE_URL": settings.database_url,
        "KIRBY_API_AUTH_ENABLED": "false",
    }
    code = (
        "import sys; from kirby_cli.api import api; from kirby_core.settings import Settings;"
        "from kirby_core.logs import configure_logging; configure_logging('INFO');"
        "api.main(['serve', '--port', sys.argv[1]], obj=Settings(), standalone_mode=True)"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 (started once; its output is read in a thread)
        [sys.executable, "-c", code, str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [await asyncio.to_thread(process.stdout.readline)]
        assert lines[0].startswith(f"Kirby API on http://127.0.0.1:{port}")
        while "Uvicorn running on" not in lines[-1]:  # logged once the socket is bound
            lines.append(await asyncio.to_thread(process.stdout.readline))
            assert lines[-1], "".join(lines)
        assert any("api started starlistings=8" in line for line in lines)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.get("/starlistings")
        assert response.status_code == 200
        assert response.json()["metadata"]["count"] == 8
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.wait, 10)
        process.stdout.close()
    assert process.returncode == 0


async def test_migrations_downgrade_to_0001(pg_server: str) -> None:
    name = "kirby_api_migration_test"
    admin = with_database(pg_server, "postgres")
    await _run(admin, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    url = with_database(pg_server, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        assert await asyncio.to_thread(migrate.current_revision, url) == migrate.head_revision()
        await asyncio.to_thread(migrate.downgrade, url, "0001")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('api_keys')") is None
            assert await conn.fetchval("SELECT to_regclass('candles')") == "candles"
        finally:
            await conn.close()
        await asyncio.to_thread(migrate.upgrade, url)
        assert await asyncio.to_thread(migrate.current_revision, url) == migrate.head_revision()
    finally:
        await _run(admin, f'DROP DATABASE "{name}" WITH (FORCE)')
