"""`kirby api serve` and `kirby apikey` refusing what would expose or garble."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from kirby_cli.main import cli


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "api.example.com"])
def test_serve_refuses_an_open_bind_with_auth_off(monkeypatch, host) -> None:
    monkeypatch.setenv("KIRBY_API_AUTH_ENABLED", "false")
    result = CliRunner().invoke(cli, ["api", "serve", "--host", host], prog_name="kirby")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output  # one line, no traceback
    assert result.output.startswith(f"Error: refusing to bind {host} with authentication off")
    assert "--allow-insecure-bind" in result.output
    assert "KIRBY_API_ALLOW_INSECURE_BIND=true" in result.output


@pytest.fixture
def uvicorn_run(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def run(app, **options) -> None:
        calls.append(options)  # the command got past its checks

    monkeypatch.setattr("kirby_cli.api.uvicorn.run", run)
    return calls


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"KIRBY_API_AUTH_ENABLED": "false"}, ["--host", "127.0.0.1"]),
        ({"KIRBY_API_AUTH_ENABLED": "false"}, ["--host", "::1"]),
        ({"KIRBY_API_AUTH_ENABLED": "false"}, ["--host", "localhost"]),
        ({"KIRBY_API_AUTH_ENABLED": "false"}, ["--host", "0.0.0.0", "--allow-insecure-bind"]),
        (
            {"KIRBY_API_AUTH_ENABLED": "false", "KIRBY_API_ALLOW_INSECURE_BIND": "true"},
            ["--host", "0.0.0.0"],
        ),
        ({}, ["--host", "0.0.0.0"]),  # auth on
    ],
)
def test_serve_binds_loopback_an_allowed_or_an_authenticated_host(
    monkeypatch, settings, uvicorn_run, env, args
) -> None:
    monkeypatch.setenv("KIRBY_DATABASE_URL", settings.database_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["api", "serve", *args], prog_name="kirby")
    assert result.exit_code == 0, result.output
    assert uvicorn_run[0]["host"] == args[1]


async def test_apikey_list_escapes_control_characters(settings, conn, monkeypatch) -> None:
    monkeypatch.setenv("KIRBY_DATABASE_URL", settings.database_url)
    forged = "evil\x1b[2J\r\n    2  kirby_forged...  admin     admin active\u2028\x85"
    await conn.execute(  # a row from before names were checked
        "INSERT INTO api_keys (name, prefix, key_hash) VALUES ($1, 'kirby_abcdef', $2)",
        forged,
        bytes(32),
    )
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["apikey", "list"], prog_name="kirby")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [result.output.rstrip("\n")]  # one line per key
    assert "evil\\x1b[2J\\r\\n    2  kirby_forged...  admin     admin active\\u2028\\x85" in (
        result.output
    )


async def test_apikey_create_refuses_control_characters(settings, conn, monkeypatch) -> None:
    monkeypatch.setenv("KIRBY_DATABASE_URL", settings.database_url)
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["apikey", "create", "bad\x1b[2Jname"], prog_name="kirby"
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: name 'bad\\x1b[2Jname' contains the control character \\x1b;"
        " use printable characters\n"
    )
    assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
