"""What the API writes to its log and metrics when clients send hostile input."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from tests.core.test_logs import TOKEN, kirby_logging  # noqa: F401  (fixture)


async def test_a_newline_in_the_path_cannot_forge_a_log_line(client, kirby_logging, capsys):  # noqa: F811
    kirby_logging("text")
    response = await client.get("/nope%0A2024-05-01T00:00:00.00Z INFO    kirby_api.access: forged")
    assert response.status_code == 404
    logged = capsys.readouterr().err.splitlines()
    lines = [line for line in logged if " kirby_api.access: " in line]
    assert len(lines) == 1, lines
    assert not any(line.startswith("2024-05-01") for line in logged)
    assert "path=/nope\\n2024-05-01T00:00:00.00Z INFO" in lines[0]
    assert "route=unmatched status=404" in lines[0]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_the_websocket_handshake_line_hides_the_key(served, kirby_logging, capsys, fmt):  # noqa: F811
    kirby_logging(fmt)
    async with served() as base, connect(f"ws://{base}/ws?coin=BTC&api_key={TOKEN}") as ws:
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
    logged = capsys.readouterr().err
    assert TOKEN not in logged
    handshake = [line for line in logged.splitlines() if "WebSocket /ws" in line]
    assert handshake and all("/ws?coin=BTC&api_key=***" in line for line in handshake)


async def test_unknown_routes_and_methods_are_counted_with_bounded_labels(client) -> None:
    for path in ("/nope", "/nope/again", "/x%00y"):
        assert (await client.get(path)).status_code == 404
    assert (await client.request("BREW", "/starlistings")).status_code == 405
    assert (await client.post("/starlistings")).status_code == 405
    metrics = (await client.get("/metrics")).text
    count = 'kirby_api_request_duration_seconds_count{{method="{}",route="unmatched",status="{}"}}'
    assert count.format("GET", 404) + " 3.0" in metrics
    assert count.format("other", 405) + " 1.0" in metrics
    assert count.format("POST", 405) + " 1.0" in metrics
    assert "BREW" not in metrics and "/nope" not in metrics


async def test_the_access_line_in_json_has_its_fields(client, kirby_logging, capsys):  # noqa: F811
    kirby_logging("json")
    response = await client.get("/nope%0Aforged")
    assert response.status_code == 404
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "kirby_api.access" in line]
    event = json.loads(line)
    assert event["event"] == "request"
    assert (event["method"], event["path"], event["route"]) == ("GET", "/nope\nforged", "unmatched")
    assert event["status"] == 404 and isinstance(event["duration_ms"], float)
    assert (event["key"], event["client"]) == ("-", "testclient")
