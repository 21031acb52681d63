"""Prometheus's own checker on the deployment's files: the rules parse and their unit tests
(`tests/ops/alerts_test.yml`, input series -> expected alerts) pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.ops.conftest import PROMETHEUS_DIR, binary

UNIT_TESTS = Path(__file__).with_name("alerts_test.yml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("promtool")), *args], capture_output=True, text=True, timeout=120
    )


def test_rules_and_config_pass_promtool_check() -> None:
    rules = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 16 rules found" in rules.stdout
    config = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the stale alert expected while the heartbeat is fresh."""
    broken = UNIT_TESTS.read_text().replace(
        "rule_files:\n  - ../../docker/prometheus/alerts.yml",
        f"rule_files:\n  - {PROMETHEUS_DIR / 'alerts.yml'}",
    )
    broken = broken.replace('values: "30+60x10"', 'values: "5x10"', 1)
    (tmp_path / "broken_test.yml").write_text(broken)
    result = promtool("test", "rules", str(tmp_path / "broken_test.yml"))
    assert result.returncode != 0
    assert "KirbyCollectorStale" in result.stdout + result.stderr
