"""A non-Python producer: Node.js with celery-node sends ``offline_ingestor.submit``, then
learns each file's state the way docs/operations.md says, with redis-cli reading
``oi:job:<job id>`` (and ``oi:failed``); a refused file is in ``failed`` and ``status`` too."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, ingestor_cli, wait_for, ymir_file

pytestmark = [pytest.mark.redis, pytest.mark.worker]

NODE_MODULES = ROOT / ".node" / "node_modules"


def node_submit(broker: str, path: str, job_id: str) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "celery-node").is_dir():
        pytest.skip("node or celery-node missing (scripts/setup installs celery-node when npm is present)")
    script = ROOT / "tests" / "data" / "submit_from_node.js"
    result = subprocess.run(
        [node, str(script), broker, "ingest", path, job_id],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def redis_cli(url: str, *command: str) -> str:
    binary = shutil.which("redis-cli")
    assert binary, "redis-cli is installed with redis-server"
    return subprocess.run(
        [binary, "-u", url, "--no-auth-warning", *command], capture_output=True, text=True, timeout=10
    ).stdout.strip()


def test_node_producer_learns_each_files_state_from_redis(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    config = queue_config()
    start_worker(config)
    good = ymir_file(data_root)
    node_submit(redis_server.url, str(good), "fw-node-1")
    node_submit(redis_server.url, "/etc/passwd", "fw-node-2")

    wait_for(lambda: redis_cli(redis_server.url, "HGET", "oi:job:fw-node-1", "state") == "done", what="done")
    assert redis_cli(redis_server.url, "HGET", "oi:job:fw-node-1", "pid") in standin.datasets
    wait_for(
        lambda: redis_cli(redis_server.url, "HGET", "oi:job:fw-node-2", "state") == "failed",
        what="the refusal recorded",
    )
    refusal = json.loads(redis_cli(redis_server.url, "HGET", "oi:failed", "fw-node-2"))
    assert refusal["step"] == "submit" and "outside the allowed data roots" in refusal["message"]
    status = json.loads(ingestor_cli("status", "-c", str(config), "--json", "fw-node-2").stdout)
    assert status["state"] == "failed" and status["writer_job_id"] == "fw-node-2"
    failed = json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout)
    assert [entry["key"] for entry in failed] == ["fw-node-2"]
