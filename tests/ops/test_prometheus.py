"""A real Prometheus scraping a real API process evaluates Kirby's alert rules.

The API runs as `kirby api serve` (uvicorn, its own process) on the test database;
Prometheus (Debian's package) scrapes its /metrics every second and evaluates
docker/prometheus/alerts.yml every second. A planted `stream_heartbeats` row plays the
collector: fresh, the stale alert stays inactive; an hour old, it fires; fresh again, it
resolves. The rules are the deployment's own, with one change: `for` durations are cut to
1s, so the test waits for evaluations rather than minutes (the expressions are untouched;
`promtool test rules` covers the `for` timing).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from kirby_core.db.urls import DatabaseUrls
from tests.ops.conftest import GRAFANA_DIR, PROMETHEUS_DIR, binary, plant_heartbeat
from tests.services import DEADLINE_SECONDS, free_port, start_api, stop, wait_until_ready


@pytest.fixture
def api_process(database_urls: DatabaseUrls, tmp_path: Path, catalog) -> Iterator[str]:
    """`kirby api serve` on a free loopback port; yields host:port."""
    port = free_port()
    process, _ = start_api(database_urls, tmp_path, port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def _rules_with_short_for(target: Path) -> None:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(groups, sort_keys=False))


@pytest.fixture
def prometheus(api_process: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping `api_process` every second; yields its base URL."""
    executable = binary("prometheus")
    _rules_with_short_for(tmp_path / "alerts.yml")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    # The deployment finds its replicas in Docker's DNS; here the one process is named.
    del config["scrape_configs"][0]["dns_sd_configs"]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [api_process]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(executable),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/-/ready", process, log)
        yield base
    finally:
        stop(process)


def _api(base: str, path: str, **params: str) -> Any:
    response = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def _stale_rule(base: str) -> dict[str, Any]:
    for group in _api(base, "rules")["groups"]:
        for rule in group["rules"]:
            if rule["name"] == "KirbyCollectorStale":
                return rule
    raise AssertionError("KirbyCollectorStale is not loaded")


def _stale_alerts(base: str) -> list[dict[str, Any]]:
    return [
        a
        for a in _api(base, "alerts")["alerts"]
        if a["labels"]["alertname"] == "KirbyCollectorStale"
    ]


def _poll(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"not within {DEADLINE_SECONDS}s: {what}")


async def test_stale_collector_fires_its_alert(prometheus: str, conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    await plant_heartbeat(conn, now)

    def heartbeat_scraped() -> float | None:
        result = _api(prometheus, "query", query="kirby_collector_heartbeat_age_seconds")["result"]
        return float(result[0]["value"][0]) if result else None

    seen_at = _poll("the heartbeat age scraped", heartbeat_scraped)
    # An evaluation that saw the fresh heartbeat: the rule is inactive, no alert.
    rule = _poll(
        "an evaluation after the fresh heartbeat was scraped",
        lambda: (
            (r := _stale_rule(prometheus))
            and datetime.fromisoformat(r["lastEvaluation"]).timestamp() > seen_at
            and r
        ),
    )
    assert rule["health"] == "ok", rule
    assert rule["state"] == "inactive"
    assert _stale_alerts(prometheus) == []

    await plant_heartbeat(conn, now - timedelta(hours=1))
    firing = _poll(
        "KirbyCollectorStale firing",
        lambda: [a for a in _stale_alerts(prometheus) if a["state"] == "firing"],
    )
    assert firing[0]["labels"] == {
        "alertname": "KirbyCollectorStale",
        "exchange": "hyperliquid",
        "severity": "critical",
    }
    assert float(firing[0]["value"]) > 3600

    await plant_heartbeat(conn, datetime.now(UTC))
    _poll("KirbyCollectorStale resolved", lambda: _stale_alerts(prometheus) == [] or None)
    assert _stale_rule(prometheus)["state"] == "inactive"


async def test_every_dashboard_query_runs_in_prometheus(
    prometheus: str, conn: asyncpg.Connection
) -> None:
    """Each panel's query, Grafana's variables filled in, is valid PromQL that Prometheus
    runs; the panels of what this test produces (requests, clients, the collector) show data.
    """
    await plant_heartbeat(conn, datetime.now(UTC), reconnects=1, buffer_sizes={"candles": 3})

    def scraped_three_times() -> bool:
        found = _api(prometheus, "query", query="count_over_time(kirby_collector_state[1m])")
        return bool(found["result"]) and min(int(r["value"][1]) for r in found["result"]) >= 3

    _poll("three scrapes of the collector's series (rates need two)", scraped_three_times)
    shows_data = {}
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                query = target["expr"].replace("$__rate_interval", "1m")
                query = query.replace('"$exchange"', '".*"')
                result = _api(prometheus, "query", query=query)["result"]  # fails unless valid
                title = f"{path.stem}: {panel['title']}"
                shows_data[title] = shows_data.get(title, False) or bool(result)
    assert len(shows_data) >= 20
    produced_here = {
        "kirby-api: Requests by route",
        "kirby-api: p99 latency by route",
        "kirby-api: WebSocket clients",
        "kirby-api: LISTEN feed",
        "kirby-collector: Heartbeat age",
        "kirby-collector: State",
        "kirby-collector: Buffered (waiting for the next flush)",
        "kirby-collector: Reconnects per hour",
        "kirby-data: Database answers (per API replica)",
    }
    assert sorted(title for title in produced_here if not shows_data[title]) == []
