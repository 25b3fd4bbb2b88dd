"""The shipped Prometheus alert rules and Grafana dashboard (deploy/monitoring/): promtool
accepts the rules and their unit tests pass; the dashboard loads and every query and rule
names a metric the worker exports (checked against a real scrape in tests/worker)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring_queries import MONITORING, metric_names, queries, unknown_metrics


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (Debian package `prometheus`: scripts/setup installs it)")
    return found


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool read every rule of the file (a rule it skipped would not be checked).
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    rules = sum(len(group["rules"]) for group in groups)
    assert rules >= 11 and f"SUCCESS: {rules} rules found" in result.stdout


def test_alert_rules_fire_in_promtool_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"], capture_output=True, text=True, cwd=MONITORING
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_loads_and_every_panel_queries_our_metrics() -> None:
    for where, exprs in queries().items():
        assert exprs, where
        for expr in exprs:
            assert metric_names(expr), f"{where}: {expr} names no offline_ingestor_ metric"


def test_unknown_metric_is_reported(tmp_path: Path) -> None:
    """The check itself: a scrape without the failed-registry gauge is caught."""
    exposition = "# TYPE offline_ingestor_queue_depth gauge\noffline_ingestor_queue_depth 0\n"
    assert any("offline_ingestor_failed_files" in item for item in unknown_metrics(exposition))
