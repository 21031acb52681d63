"""The `kirby run` / `kirby demo` status screen says why the stream or a backfill is not
well: a degraded collector's reason in one line, a failed backfill's root cause."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import httpx

from kirby_cli.dagster_client import DagsterClient
from kirby_cli.stack_backfills import Backfills
from kirby_cli.stack_status import StackSnapshot, render, snapshot
from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from tests.conftest import REPO, empty_tables

HYPERLIQUID_CATALOG = REPO / "config" / "starlistings.hyperliquid.yaml"

REASON = "cannot reach api.hyperliquid.xyz: [Errno -3] Temporary failure in name resolution"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def _execute(url: str, statement: str, *args: object) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def _sync(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(conn, load_catalog(HYPERLIQUID_CATALOG))
    finally:
        await conn.close()


async def _empty(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await empty_tables(conn)
    finally:
        await conn.close()


def test_a_degraded_collector_shows_its_reason(
    database_urls: DatabaseUrls, settings: Settings, tmp_path: Path
) -> None:
    url = database_urls.realtime
    asyncio.run(_sync(url))
    feeds = json.dumps({"hyperliquid": {"state": "degraded", "last_error": REASON}})
    asyncio.run(
        _execute(
            url,
            "INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at,"
            " heartbeat_at, state, last_error, feeds) VALUES ('hl', 'box', 1, now(), now(),"
            " 'degraded', $1, $2::jsonb)",
            f"hyperliquid: {REASON}",
            feeds,
        )
    )
    try:
        stack = SimpleNamespace(
            children=[],
            databases=database_urls,
            backfills=None,
            config=SimpleNamespace(settings=settings),
        )
        snap = snapshot(stack)  # type: ignore[arg-type]
    finally:
        asyncio.run(_empty(url))
    screen = render(snap, NOW, 2, tmp_path).splitlines()
    [stream] = [line for line in screen if line.startswith("  stream")]
    assert stream.startswith(
        f"  stream     DEGRADED: hyperliquid: {REASON} (heartbeat 0 s ago (hl))"
    )
    exchanges = screen[screen.index(next(x for x in screen if x.startswith("  exchanges"))) :]
    assert exchanges[0] == f"  exchanges  hyperliquid  degraded: {REASON}, 0 candles"


class FakeDagster:
    """The two backfill calls, answered from a table."""

    def __init__(self, statuses: dict[str, str], failures: dict[str, str]) -> None:
        self.statuses, self.failures = statuses, failures

    def backfill_status(self, backfill_id: str) -> str:
        return self.statuses[backfill_id]

    def backfill_failure(self, backfill_id: str) -> str | None:
        return self.failures.get(backfill_id)


def test_a_failed_backfill_shows_its_root_cause(tmp_path: Path) -> None:
    cause = "fetch_candles: cannot reach api.hyperliquid.xyz: timed out"
    client = FakeDagster({"b1": "COMPLETED_FAILED", "b2": "COMPLETED_SUCCESS"}, {"b1": cause})
    backfills = Backfills(client, ([], []), 1, ["candles"], export_lake=False)  # type: ignore[arg-type]
    backfills.history = {"candles 2026-12-05": "b1", "funding_rates 2026-12-05": "b2"}
    backfills.status = dict.fromkeys(backfills.history, "REQUESTED")
    backfills.step()
    assert backfills.failures == {"candles 2026-12-05": cause}
    snap = snapshot_of(backfills)
    screen = render(snap, NOW, 2, tmp_path).splitlines()
    at = screen.index(next(line for line in screen if "candles 2026-12-05" in line))
    assert "COMPLETED_FAILED" in screen[at]
    assert screen[at + 1].strip() == cause
    assert "funding_rates 2026-12-05" in screen[at + 2]


def snapshot_of(backfills: Backfills) -> StackSnapshot:
    return StackSnapshot([], backfills=dict(backfills.status), backfill_failures=backfills.failures)


def test_the_root_cause_of_a_failed_backfill_comes_from_its_failed_step() -> None:
    """Against Dagster's GraphQL answers (as the webserver gives them): the innermost cause of
    the failed step, without the op wrapper's message or the exception class."""

    def answer(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        if "partitionBackfillOrError" in query:
            data = {
                "partitionBackfillOrError": {
                    "__typename": "PartitionBackfill",
                    "error": None,
                    "runs": [
                        {"runId": "r2", "status": "SUCCESS"},
                        {"runId": "r1", "status": "FAILURE"},
                    ],
                }
            }
        else:
            step_error = {
                "message": "dagster._core.errors.DagsterExecutionStepExecutionError: Error"
                ' occurred while executing op "candles":\n',
                "causes": [
                    {
                        "message": "kirby_core.errors.ExchangeUnavailable: cannot reach"
                        " api.hyperliquid.xyz: timed out\n"
                    }
                ],
            }
            data = {
                "runOrError": {
                    "__typename": "Run",
                    "eventConnection": {
                        "events": [
                            {"__typename": "RunStartEvent"},
                            {
                                "__typename": "ExecutionStepFailureEvent",
                                "stepKey": "candles",
                                "error": step_error,
                            },
                            {"__typename": "RunFailureEvent", "message": "Execution failed."},
                        ]
                    },
                }
            }
        return httpx.Response(200, json={"data": data})

    client = DagsterClient("http://dagster", transport=httpx.MockTransport(answer))
    try:
        reason = client.backfill_failure("b1")
    finally:
        client.close()
    assert reason == "candles: cannot reach api.hyperliquid.xyz: timed out"
