"""The shipped Prometheus alert rules and Grafana dashboard (deploy/monitoring/): promtool
accepts the rules and their unit tests pass; the dashboard loads and every query and rule
names a metric the worker exports (checked against a real scrape in tests/worker)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
_METRIC = re.compile(r"\b(offline_ingestor_[a-z_]+)\b")


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
    assert "SUCCESS: 9 rules found" in result.stdout


def test_alert_rules_fire_in_promtool_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"], capture_output=True, text=True, cwd=MONITORING
    )
    assert result.returncode == 0, result.stdout + result.stderr


def queries() -> dict[str, list[str]]:
    """Every PromQL expression shipped: dashboard targets and alert rules, by where."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = {
        f"panel {panel['title']!r}": [target["expr"] for target in panel["targets"]]
        for panel in dashboard["panels"]
    }
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = [rule["expr"]]
    return found


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def test_dashboard_loads_and_every_panel_queries_our_metrics() -> None:
    for where, exprs in queries().items():
        assert exprs, where
        for expr in exprs:
            assert metric_names(expr), f"{where}: {expr} names no offline_ingestor_ metric"


def exported_names(exposition: str) -> set[str]:
    """Family and sample names in a worker's /metrics text (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def unknown_metrics(exposition: str) -> list[str]:
    """``where: name`` for every metric a query names that the exposition lacks."""
    names = exported_names(exposition)
    return [
        f"{where}: {name}"
        for where, exprs in queries().items()
        for expr in exprs
        for name in sorted(metric_names(expr))
        if name not in names
    ]


def test_unknown_metric_is_reported(tmp_path: Path) -> None:
    """The check itself: a scrape without the failed-registry gauge is caught."""
    exposition = "# TYPE offline_ingestor_queue_depth gauge\noffline_ingestor_queue_depth 0\n"
    assert any("offline_ingestor_failed_files" in item for item in unknown_metrics(exposition))
