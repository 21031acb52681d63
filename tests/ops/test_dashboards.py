"""The Grafana dashboards and the alert rules stay true to the metrics the API exposes.

Every `kirby_*` metric a dashboard query, dashboard variable or alert rule names must be
a sample name of the running app's /metrics (scraped in-process on the test database), so a
renamed or removed metric fails here rather than leaving an empty panel or a silent rule.
One metric is allowed to be missing, with its reason, until something exports it.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import GRAFANA_DIR, PROMETHEUS_DIR, plant_backup, plant_heartbeat

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

NOT_EXPORTED_YET: dict[str, str] = {}
"""Metrics a rule or panel names before anything exports them, each with its reason."""

_METRIC = re.compile(r"\bkirby_[a-z0-9_]+\b")
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created", ""),
    "gauge": ("",),
    "unknown": ("",),
}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def rule_queries() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def referenced_metrics(queries: list[str]) -> set[str]:
    return {name for query in queries for name in _METRIC.findall(query)}


def exposed_samples(text: str) -> set[str]:
    """Every sample name the exposition declares, whether or not it has samples yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def test_dashboards_are_valid_provisioned_json() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uid = datasources[0]["uid"]
    assert {d.stem for d in DASHBOARDS} == {"kirby-api", "kirby-collector", "kirby-data"}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] == path.stem
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dashboard["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            assert panel["targets"], panel["title"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"]["uid"] == uid
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "kirby.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def test_dashboard_queries_use_only_known_variables() -> None:
    """Grafana's `$__rate_interval` and a dashboard's own variables, nothing else (the real
    Prometheus test fills in exactly these)."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        own = {f"${v['name']}" for v in dashboard.get("templating", {}).get("list", [])}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                used = set(re.findall(r"\$\w+", target["expr"]))
                assert used <= {"$__rate_interval", *own}, (path.name, panel["title"], used)
    collector = json.loads((GRAFANA_DIR / "dashboards" / "kirby-collector.json").read_text())
    assert [v["name"] for v in collector["templating"]["list"]] == ["exchange"]


def test_dashboards_cover_what_operators_watch() -> None:
    """The issue's list: API latency and errors by route, WebSocket clients and drops,
    the collector per exchange (lag, reconnects, outages, buffer), freshness, backup age."""
    queries = [q for path in DASHBOARDS for q in dashboard_queries(json.loads(path.read_text()))]
    used = referenced_metrics(queries)
    assert {
        "kirby_api_request_duration_seconds_bucket",
        "kirby_api_request_duration_seconds_count",
        "kirby_api_ws_connections",
        "kirby_api_ws_messages_dropped_total",
        "kirby_collector_lag_seconds",
        "kirby_collector_reconnects_total",
        "kirby_collector_outages_total",
        "kirby_collector_buffered_rows",
        "kirby_api_data_behind_seconds",
        "kirby_backup_last_success_timestamp_seconds",
    } <= used
    by_route = [q for q in queries if "kirby_api_request_duration_seconds" in q]
    assert by_route and all("by (route" in q or "by (status" in q for q in by_route)


async def test_every_metric_a_dashboard_or_rule_names_is_exposed(
    api, conn, catalog, tmp_path: Path
) -> None:
    await plant_heartbeat(conn, datetime.now(UTC))
    plant_backup(tmp_path / "backups", "realtime", datetime.now(UTC))
    async with api(
        api_auth_enabled=False,
        backup_url=str(tmp_path / "backups"),
        api_backup_watch_seconds=0.05,
    ) as client:
        for _ in range(200):  # until the backup watch has read the location once
            response = await client.get("/metrics")
            if "kirby_backup_last_success_timestamp_seconds{" in response.text:
                break
            await asyncio.sleep(0.05)
    assert response.status_code == 200
    exposed = exposed_samples(response.text)
    queries = rule_queries() + [
        q for path in DASHBOARDS for q in dashboard_queries(json.loads(path.read_text()))
    ]
    referenced = referenced_metrics(queries)
    assert len(referenced) > 20
    assert sorted(referenced - exposed - NOT_EXPORTED_YET.keys()) == []
    # When one of these starts being exported, its allowance goes.
    assert sorted(NOT_EXPORTED_YET.keys() & exposed) == []
    assert NOT_EXPORTED_YET.keys() <= referenced
