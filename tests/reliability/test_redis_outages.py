"""Redis outages with real processes: files enqueued while Redis is down (spool), a Sentinel
failover after the primary is SIGKILLed mid-run, Redis at maxmemory under a running worker.

Each case records files / lost / duplicated for RELIABILITY.md's "Redis outages" table.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from helpers import BIN, wait_for
from offline_ingestor.queue.spool import Spool
from offline_ingestor.testing import Fault
from offline_ingestor.testing.processes import RedisServer, SentinelServer
from reliability.runs import enqueue_all, make_files, redis_of, settled, tally, wait_settled
from reliability.sentinels import sentinel_queue

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def drop_in(config: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """The online ingestor's call: ``scicat_background_ingestor -c CONFIG --nexus-file FILE``."""
    return subprocess.run(
        [str(BIN / "scicat_background_ingestor"), "-c", str(config), "--nexus-file", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "count", [pytest.param(20, id="20-files"), pytest.param(200, id="200-files", marks=pytest.mark.slow)]
)
def test_redis_down_while_the_drop_in_enqueues(
    count: int,
    redis_server: RedisServer,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    tmp_path: Path,
    figures: Any,
) -> None:
    """Redis down while files finish: every drop-in exits 0 "spooled"; Redis back: all ingested once."""
    # Given the drop-in configured for the queue with a spool, and Redis down
    config = fast_config(queue={"spool_dir": str(tmp_path / "spool"), "spool_flush_interval_s": 1})
    files = make_files(data_root, count)
    redis_server.stop()
    # When the online ingestor spawns the drop-in for each file
    results = [drop_in(config, path) for path in files]
    # Then none fails (the online ingestor never retries) and each says it spooled the file
    assert [result.returncode for result in results] == [0] * count, results[0]
    assert all(result.stdout.startswith("spooled: ") for result in results), results[0].stdout
    assert Spool(tmp_path / "spool").count() == count
    # When Redis is back and a worker runs (its flusher sends the spool; no producer call needed)
    redis_server.start()
    start_worker(config)
    wait_for(lambda: settled(config, count), timeout=120 + count, what="every spooled file to be ingested")
    # Then every file is in SciCat exactly once
    result = tally(standin, files)
    figures(result, outage="Redis down at enqueue (drop-in, spool)")
    assert (result.lost, result.duplicated) == (0, 0)


@pytest.mark.parametrize(
    "count", [pytest.param(60, id="60-files"), pytest.param(1000, id="1000-files", marks=pytest.mark.slow)]
)
def test_primary_killed_sentinel_promotes_the_replica(
    count: int,
    sentinel_set: dict[str, Any],
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    tmp_path: Path,
    figures: Any,
) -> None:
    """SIGKILL of the Redis primary mid-run: replica promoted, worker and producers go on, each file once."""
    primary: RedisServer = sentinel_set["primary"]
    replica: RedisServer = sentinel_set["replica"]
    sentinels: list[SentinelServer] = sentinel_set["sentinels"]
    # Given a worker and producers that reach Redis through the sentinels
    config = fast_config(
        queue={
            **sentinel_queue(sentinels),
            "spool_dir": str(tmp_path / "spool"),
            "spool_flush_interval_s": 1,
        }
    )
    health = subprocess.run(
        [str(BIN / "offline-ingestor"), "health", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"},
    )
    redis_check = next(check for check in yaml.safe_load(health.stdout) if check["name"] == "redis")
    assert redis_check["ok"] and "persistence AOF" in redis_check["detail"], redis_check
    files = make_files(data_root, count)
    paths = list(files)
    first, second = paths[: count // 2], paths[count // 2 :]
    standin.inject(Fault(status=None, delay_s=0.02, times=None))  # a run that lasts a while
    worker = start_worker(config)
    enqueue_all(config, first)
    wait_for(lambda: len(standin.origdatablocks) >= count // 6, timeout=60 + count, what="a sixth of the run")
    # When the primary's host dies mid-run
    primary.stop(kill=True)
    killed_at = time.monotonic()
    # ... and producers keep enqueueing during the failover
    enqueue_all(config, second)
    # Then a sentinel promotes the replica
    wait_for(
        lambda: all(sentinel.master_port_now() == replica.port for sentinel in sentinels),
        timeout=60,
        what="the sentinels to promote the replica",
    )
    promoted_s = time.monotonic() - killed_at

    # And the worker (still the same process) finishes every file exactly once
    wait_settled(
        config, count, timeout=120 + count, workers=[worker], what="the run to settle after the failover"
    )
    result = tally(standin, files)
    figures(result, outage="primary SIGKILLed, Sentinel failover", failover_s=round(promoted_s, 1))
    assert (result.lost, result.duplicated) == (0, 0)
    assert not redis_of(config).hlen("oi:failed")


def test_worker_waits_while_redis_is_full(
    redis_server: RedisServer,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    tmp_path: Path,
    figures: Any,
) -> None:
    """Redis at maxmemory (noeviction) under a running worker: it waits, then finishes every file once."""
    count = 40
    config = fast_config(queue={"spool_dir": str(tmp_path / "spool"), "spool_flush_interval_s": 1})
    files = make_files(data_root, count)
    standin.inject(Fault(status=None, delay_s=0.02, times=None))
    worker = start_worker(config)
    enqueue_all(config, files)
    wait_for(lambda: len(standin.origdatablocks) >= count // 5, timeout=120, what="a fifth of the run")
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory", 1)  # every write is refused with OOM from now on
    time.sleep(5)  # the worker meets the full Redis for a while
    assert worker.process.poll() is None, "the worker exited when Redis was full; see its log"
    admin.config_set("maxmemory", 0)

    wait_settled(
        config, count, timeout=240, workers=[worker], what="the run to settle after Redis had room again"
    )
    result = tally(standin, files)
    figures(result, outage="Redis at maxmemory (noeviction) mid-run")
    assert (result.lost, result.duplicated) == (0, 0)
    failed = redis_of(config).hgetall("oi:failed")
    assert not failed, failed


def test_restart_without_persistence_loses_queued_files_and_health_says_so(
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    tmp_path: Path,
    figures: Any,
) -> None:
    """A Redis with no AOF and no RDB, SIGKILLed mid-run, comes back empty: the queued files are
    gone (measured), `health` fails on such a Redis beforehand, and enqueueing the same files
    again ingests the lost ones without duplicating the others (SciCat-side checks)."""
    count = 40
    volatile = RedisServer(tmp_path / "volatile", appendonly=False).start()
    try:
        config = fast_config(queue={"broker_url": volatile.url})
        health = subprocess.run(
            [str(BIN / "offline-ingestor"), "health", "--json", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"},
        )
        redis_check = next(check for check in yaml.safe_load(health.stdout) if check["name"] == "redis")
        assert health.returncode == 1 and "no persistence" in redis_check["detail"]
        files = make_files(data_root, count)
        standin.inject(Fault(status=None, delay_s=0.02, times=None))
        worker = start_worker(config)
        enqueue_all(config, files)
        wait_for(lambda: len(standin.origdatablocks) >= count // 5, timeout=120, what="a fifth of the run")
        volatile.stop(kill=True)
        volatile.start()  # empty: the queue and every job record are gone
        time.sleep(8)  # the worker reconnects; nothing is left to do

        def quiet() -> bool:
            assert worker.process.poll() is None
            client = redis_of(config)
            return not any(client.llen(n) for n in client.scan_iter("ingest*") if client.type(n) == "list")

        wait_for(quiet, timeout=60, what="the queue to be empty")
        lost_on_restart = tally(standin, files).lost
        # Re-enqueueing every file recovers the lost ones and duplicates nothing
        enqueue_all(config, files)
        wait_for(lambda: settled(config, count), timeout=180, what="the re-enqueued run to settle")
        result = tally(standin, files)
        figures(result, outage="restart without AOF/RDB (kill -9)", lost_before_reenqueue=lost_on_restart)
        assert (result.lost, result.duplicated) == (0, 0)
    finally:
        volatile.stop(kill=True)


def test_worker_and_producers_with_an_acl_user_never_log_the_password(
    redis_server: RedisServer,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    tmp_path: Path,
    figures: Any,
) -> None:
    """Redis with requirepass and an ACL user in the URL: files ingested; the password in no output."""
    password = "Acl-pw-7d1e"
    redis.Redis.from_url(redis_server.url).execute_command(
        "ACL", "SETUSER", "ingestor", "on", f">{password}", "~*", "&*", "+@all"
    )
    redis.Redis.from_url(redis_server.url).execute_command("ACL", "SETUSER", "default", "off")
    url = f"redis://ingestor:{password}@127.0.0.1:{redis_server.port}/0"
    config = fast_config(queue={"broker_url": url, "spool_dir": str(tmp_path / "spool")})
    files = make_files(data_root, 5)
    worker = start_worker(config)
    enqueued = enqueue_all(config, files)
    wait_for(lambda: settled(config, len(files)), timeout=120, what="the files to be ingested")
    status = subprocess.run(
        [str(BIN / "offline-ingestor"), "status", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = tally(standin, files)
    figures(result, outage="requirepass + ACL user in the URL")
    assert (result.lost, result.duplicated) == (0, 0)
    outputs = enqueued.stdout + enqueued.stderr + status.stdout + status.stderr + worker.log.read_text()
    assert password not in outputs
