"""Issue 22's chaos case: a worker SIGKILLed, ``celery purge`` once and some tasks revoked in
one run; every file ends done once with no operator command. Reports, per fault, the time to
the last affected file's terminal state (``updated_at`` of its done record)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import BIN, wait_for
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, make_files, redis_of, settled, store_of, tally, unsettled

pytestmark = [pytest.mark.redis, pytest.mark.worker]

LIVE = {
    "visibility_timeout_s": 3600,  # nothing here may wait for it
    "task_time_limit_s": 60,
    "retry_backoff_s": 0.1,
    "retry_backoff_max_s": 1,
    "heartbeat_interval_s": 0.3,
    "heartbeat_ttl_s": 1.5,
    "reconcile_interval_s": 0.5,
    "max_redeliveries": 10,
}


def celery(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OFFLINE_INGESTOR_CONFIG": str(config)}
    return subprocess.run(
        [str(BIN / "celery"), "-A", "offline_ingestor.worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def waiting_messages(client: Any) -> list[tuple[str, str]]:
    """(task id, file key) of every message on the ingest lists."""
    found = []
    for name in client.scan_iter("ingest*"):
        if client.type(name) != "list":
            continue
        for raw in client.lrange(name, 0, -1):
            message = json.loads(raw)
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            found.append((message["headers"]["id"], json.loads(body)[0][0]["key"]))
    return found


def done_at(config: Path) -> dict[str, float]:
    """Key -> epoch of its terminal record's last change."""
    times = {}
    for record in store_of(config).records():
        if record.state in ("done", "failed"):
            stamp = record.fields["updated_at"]
            then = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            times[record.key] = then + float("0" + stamp[19:-1])
    return times


def test_kill_purge_and_revoke_leave_nothing_stuck(
    standin: Any, queue_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """60 files; SIGKILL a worker, purge once, revoke three waiting tasks: 0 lost, 0 doubled, 0 open."""
    count = 60
    files = make_files(data_root, count)
    standin.inject(Fault(status=None, delay_s=0.05, times=None))
    config = queue_config(queue=LIVE)
    client = redis_of(config)
    victim = start_worker(config, concurrency=2)
    start_worker(config, concurrency=1)
    enqueue_all(config, files)
    faults: dict[str, tuple[float, set[str]]] = {}
    # SIGKILL one whole worker mid-run: its files are those it holds or has unacked.
    wait_for(lambda: len(standin.origdatablocks) >= 5, 120, "a few files done")
    pids = {str(pid) for pid in (victim.process.pid, *victim.children())}
    held = {
        str(name).removeprefix("oi:holder:")
        for name in client.scan_iter("oi:holder:*")
        if str(client.get(name) or "").rpartition(":")[2] in pids
    }
    at = time.time()
    victim.kill()
    faults["worker SIGKILL"] = (at, held)
    # Purge once: every waiting message goes.
    wait_for(lambda: len(waiting_messages(client)) >= 10, 120, "messages to purge")
    purged = {key for _, key in waiting_messages(client)}
    at = time.time()
    result = celery(config, "purge", "-f")
    assert result.returncode == 0, result.stderr
    faults["celery purge"] = (at, purged)
    # Revoke three waiting tasks (as Flower does: a broadcast to the workers).
    wait_for(lambda: len(waiting_messages(client)) >= 3, 120, "messages to revoke")
    chosen = waiting_messages(client)[:3]
    at = time.time()
    result = celery(config, "control", "revoke", *(task_id for task_id, _ in chosen))
    assert result.returncode == 0, result.stderr
    faults["revoke 3 tasks"] = (at, {key for _, key in chosen})
    # Then, with no operator command, every file ends done once.
    try:
        wait_for(lambda: settled(config, count), 240, "every file to be terminal")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {unsettled(config)}") from None
    ended = done_at(config)
    for name, (at, keys) in faults.items():
        last = max((ended[key] for key in keys if key in ended), default=at)
        figures(**{f"{name.replace(' ', '_')}_to_terminal_s": round(last - at, 1)})
        print(f"{name}: {len(keys)} files affected, last terminal {last - at:.1f} s after the fault")
    outcome = tally(standin, files)
    figures(outcome)
    assert (outcome.lost, outcome.duplicated) == (0, 0)
    states = {record.state for record in store_of(config).records()}
    assert states == {"done"}, states
