"""Queue commands without traps (click's runner, a real redis-server, no worker needed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import BIN, write_config, ymir_file
from offline_ingestor.cli import cli
from offline_ingestor.config import load_config

pytestmark = [pytest.mark.redis]


@pytest.fixture
def config(tmp_path: Path, standin: Any, data_root: Path, redis_server: Any) -> Path:
    return write_config(tmp_path / "c.yml", standin, data_root, queue={"broker_url": redis_server.url})


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def test_enqueue_from_a_pipe_tries_and_reports_every_line(config: Path, data_root: Path) -> None:
    """`H1 /etc/passwd missing H2`: both files queued, each line reported, exit 1 at the end."""
    first, second = ymir_file(data_root, name="h1.hdf"), ymir_file(data_root, name="h2.hdf")
    missing = data_root / "not-there.hdf"
    result = run("enqueue", "-c", str(config), stdin=f"{first}\n/etc/passwd\n{missing}\n{second}\n")
    lines = result.stdout.splitlines()  # the tally goes to stderr
    assert result.exit_code == 1, result.output
    assert [line.split()[0] for line in lines] == ["queued", "refused", "refused", "queued"]
    assert str(first) in lines[0] and str(second) in lines[3]
    assert "outside the allowed data roots" in lines[1]
    assert "does not exist" in lines[2]
    again = run("enqueue", "-c", str(config), "--json", str(first))
    assert again.exit_code == 0
    assert json.loads(again.output)[0]["status"] == "already queued"


def test_enqueue_all_queued_exits_zero(config: Path, data_root: Path) -> None:
    result = run("enqueue", "-c", str(config), str(ymir_file(data_root)))
    assert result.exit_code == 0 and result.output.startswith("queued")


def test_status_json_has_typed_numbers_and_unambiguous_names(config: Path, data_root: Path) -> None:
    path = ymir_file(data_root)
    run("enqueue", "-c", str(config), "--job-id", "fw-42", str(path))
    status = json.loads(run("status", "-c", str(config), "--json", "fw-42").output)
    assert status["attempts"] == 0 and isinstance(status["attempts"], int)
    assert status["key"] == "fw-42" and status["writer_job_id"] == "fw-42"
    assert "job_id" not in status and "pid" not in status


def test_worker_dash_c_is_concurrency_with_a_hint_for_a_path(config: Path) -> None:
    """`worker -c 4` is Celery's concurrency; `worker -c FILE` says to use --config."""
    result = CliRunner().invoke(cli, ["worker", "-c", str(config)])
    assert result.exit_code == 2
    assert "--concurrency" in result.output and "--config FILE" in result.output


def test_every_json_option_has_help() -> None:
    for command in (["enqueue"], ["status"], ["failed"], ["health"], ["ingest-now"], ["schemas", "explain"]):
        text = run(*command, "--help").output
        (line,) = [line for line in text.splitlines() if line.strip().startswith("--json")]
        assert len(line.split()) > 1, f"{command}: --json has no help"


def test_enqueue_on_a_terminal_prints_a_hint(config: Path) -> None:
    """With no FILE and stdin on a terminal (a real pty), say that paths are read from stdin;
    Ctrl-D ends the input."""
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [str(BIN / "offline-ingestor"), "enqueue", "--config", str(config)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"},
        )
        assert process.stderr is not None
        hint = process.stderr.readline().decode()
        os.write(master, b"\x04")
        process.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert "reading paths from stdin" in hint
    assert process.returncode == 0


def test_queue_gauges_read_depth_and_the_oldest_files_age(
    config: Path, data_root: Path, redis_server: Any
) -> None:
    """The scrape-time gauges on a real queue: one waiting file, enqueued (as its record says)
    at 2020-01-01, gives depth 1 and an age of years; the failed registry is 0."""
    import redis

    from offline_ingestor.worker.metrics_server import _WorkerCollector

    run("enqueue", "-c", str(config), "--job-id", "fw-old", str(ymir_file(data_root)))
    redis.Redis.from_url(redis_server.url).hset("oi:job:fw-old", "enqueued_at", "2020-01-01T00:00:00.000Z")
    families = {
        family.name: family for family in _WorkerCollector(load_config(str(config)).queue, "", 2).collect()
    }
    value = {name: family.samples[0].value for name, family in families.items()}
    assert value["offline_ingestor_queue_depth"] == 1
    assert value["offline_ingestor_queue_oldest_age_seconds"] > 5 * 365 * 86400
    assert value["offline_ingestor_failed_files"] == 0 and value["offline_ingestor_redis_up"] == 1
