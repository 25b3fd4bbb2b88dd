"""Metrics an operator alerts on, read from a real worker's scrape."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ingestor_cli, wait_for, ymir_file
from offline_ingestor.testing.processes import free_port

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_refused_scicat_login_is_a_counted_scicat_error(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """Login refused (401: an unknown account): offline_ingestor_scicat_errors_total{kind="client"}."""
    port = free_port()
    config = queue_config(queue={"metrics_port": port}, scicat={"username": "no-such-account"})
    start_worker(config)
    assert ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root))).returncode == 0

    def failed() -> bool:
        return len(json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout or "[]")) == 1

    wait_for(failed, 60, "the file to fail on the login")
    (entry,) = json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout)
    assert "login" in entry["message"] and "401" in entry["message"], entry
    errors = scrape(port)[("offline_ingestor_scicat_errors_total", (("kind", "client"),))]
    assert errors >= 1
