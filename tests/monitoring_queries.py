"""What the shipped alert rules and Grafana dashboard query, checked against a real scrape."""

from __future__ import annotations

import json
import re

import yaml

from helpers import ROOT

__all__ = ["MONITORING", "exported_names", "metric_names", "queries", "unknown_metrics"]

MONITORING = ROOT / "deploy" / "monitoring"
_METRIC = re.compile(r"\b(offline_ingestor_[a-z_]+)\b")


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
