"""Issue 22: nothing stuck. Each fault leaves every file done, with no operator, or with the
one operator command that should work (real Redis, real workers, the SciCat stand-in).

The visibility timeout is an hour here: nothing in these tests may wait for it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import BIN, LIVE, ingestor_cli, wait_for, ymir_file
from offline_ingestor.testing import Fault

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def record(client: redis.Redis, key: str) -> dict[str, str]:
    return client.hgetall(f"oi:job:{key}")  # type: ignore[return-value]


def only_key(client: redis.Redis) -> str:
    (name,) = list(client.scan_iter("oi:job:*"))
    return str(name).removeprefix("oi:job:")


def no_live_process(client: redis.Redis) -> bool:
    return not list(client.scan_iter("oi:proc:*"))


def states(client: redis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in client.scan_iter("oi:job:*"):
        state = str(client.hget(name, "state"))
        counts[state] = counts.get(state, 0) + 1
    return counts


def test_force_takes_over_the_lease_of_a_killed_worker(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """Problem 1: a SIGKILLed worker's file; ``enqueue --force`` takes over its lease and the
    file ends done once (before: "queued", then dropped as chain.duplicate, stuck)."""
    # The reconciler is slowed right down: only the forced claim can move this file.
    config = queue_config(queue={**LIVE, "reconcile_interval_s": 3600})
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=None, delay_s=4, times=1))
    worker = start_worker(config)
    path = ymir_file(data_root)
    assert ingestor_cli("enqueue", "-c", str(config), str(path)).stdout.startswith("queued")
    wait_for(lambda: "write:post-dataset" in record(client, only_key(client)), what="the dataset POST")
    key = only_key(client)
    worker.kill()
    # Once the dead worker's heartbeats expired (at once on the old code: it has none)
    wait_for(lambda: no_live_process(client), what="the dead worker's heartbeats to expire")
    start_worker(config)
    forced = ingestor_cli("enqueue", "--force", "-c", str(config), str(path))
    assert forced.stdout.startswith("queued"), forced.stdout + forced.stderr
    wait_for(lambda: record(client, key).get("state") == "done", 60, "the file to be done")
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1


def test_force_is_refused_while_the_holder_lives(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """A forced enqueue of a file a live worker is running says so instead of a dropped chain."""
    config = queue_config(queue=LIVE)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=None, delay_s=4, times=1))
    start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: "write:post-dataset" in record(client, only_key(client)), what="the dataset POST")
    forced = ingestor_cli("enqueue", "--force", "-c", str(config), str(path))
    assert forced.stdout.startswith("already running (held by "), forced.stdout
    wait_for(lambda: record(client, only_key(client)).get("state") == "done", 60, "the file to be done")
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1


def test_dead_workers_unacked_step_is_restored_without_the_visibility_timeout(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """Problem 1 without an operator: the killed worker's delivery goes back within seconds."""
    config = queue_config(queue=LIVE)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=None, delay_s=4, times=1))
    worker = start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: "write:post-dataset" in record(client, only_key(client)), what="the dataset POST")
    key = only_key(client)
    worker.kill()
    killed = time.monotonic()
    start_worker(config)
    wait_for(lambda: record(client, key).get("state") == "done", 90, "the file to be done")
    print(f"fault → terminal: {time.monotonic() - killed:.1f} s")
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1


def test_purged_files_are_resumed(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """Problem 2: ``celery purge`` empties the queue; every file still ends done, once."""
    config = queue_config(queue=LIVE)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    paths = [ymir_file(data_root, name=f"p{index}.hdf") for index in range(4)]
    ingestor_cli("enqueue", "-c", str(config), *map(str, paths))
    purge = ingestor_cli_celery(config, "purge", "-f")
    assert purge.returncode == 0, purge.stderr
    assert "4 messages" in purge.stdout, purge.stdout
    start_worker(config)
    wait_for(lambda: states(client) == {"done": 4}, 90, "every file to be done")
    assert len(standin.datasets) == 4 and len(standin.origdatablocks) == 4


def test_lost_next_step_publish_is_resumed(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """Problem 3: a step done, its next message gone (as after a failover), nothing unacked."""
    config = queue_config(queue=LIVE)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    standin.inject(Fault(method="GET", path_regex=r"/proposals", status=None, delay_s=4, times=1))
    worker = start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: record(client, only_key(client)).get("step") == "extract", what="extract to start")
    key = only_key(client)
    worker.kill()
    # What the promoted replica held in issue 13's run: record, lease, no message anywhere.
    client.delete("unacked", "unacked_index")
    assert record(client, key)["state"] == "running"
    start_worker(config)
    wait_for(lambda: record(client, key).get("state") == "done", 90, "the file to be done")
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1


def ingestor_cli_celery(config: Path, *args: str) -> Any:
    """``celery -A offline_ingestor.worker ARGS`` with the worker's config, as an operator runs it."""
    env = {**os.environ, "OFFLINE_INGESTOR_CONFIG": str(config)}
    return subprocess.run(
        [str(BIN / "celery"), "-A", "offline_ingestor.worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_done_file_whose_dataset_is_gone_is_reingested_by_the_audit(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """Problem 4: Redis says done, SciCat lost the dataset; ``audit --enqueue-missing`` re-runs
    it (before: "already done", nothing queued) and it ends with one dataset and one block."""
    config = queue_config(queue=LIVE)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: record(client, only_key(client)).get("state") == "done", 60, "the file to be done")
    key, first_pid = only_key(client), next(iter(standin.datasets))
    standin.reset()  # the catalogue lost it (a restore from an older backup, a deletion)
    result = ingestor_cli("audit", "-c", str(config), "--enqueue-missing", "--json")
    actions = [json.loads(line).get("action") for line in result.stdout.splitlines() if line.startswith("{")]
    assert f"enqueue {path}: queued" in actions, result.stdout + result.stderr
    wait_for(lambda: len(standin.origdatablocks) == 1, 60, "the block posted again")
    wait_for(lambda: record(client, key).get("state") == "done", 60, "the file done again")
    assert list(standin.datasets) == [first_pid] and len(standin.origdatablocks) == 1


def test_redis_full_for_longer_than_the_heartbeat_ttl(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """Redis refuses writes (OOM) for several heartbeat TTLs: heartbeats expire while the worker
    lives; the worker keeps running, the reconciler waits for steady beats, every file ends once."""
    config = queue_config(queue=LIVE)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    standin.inject(Fault(status=None, delay_s=0.05, times=None))
    worker = start_worker(config)
    paths = [ymir_file(data_root, name=f"m{index}.hdf") for index in range(12)]
    ingestor_cli("enqueue", "-c", str(config), *map(str, paths))
    wait_for(lambda: len(standin.origdatablocks) >= 2, 60, "a few files done")
    client.config_set("maxmemory", 1)
    wait_for(lambda: no_live_process(client), 30, "every heartbeat to expire under OOM")
    assert worker.process.poll() is None, "the worker exited at maxmemory"
    client.config_set("maxmemory", 0)
    wait_for(lambda: states(client) == {"done": 12}, 120, "every file to be done")
    assert worker.process.poll() is None, "the worker exited at maxmemory"
    assert len(standin.datasets) == 12 and len(standin.origdatablocks) == 12


def scrape(port: int) -> dict[str, float]:
    """Unlabelled samples of the worker's /metrics, by name."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_a_long_step_is_stuck_in_metrics_and_status_then_clears(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """A file running longer than ``stuck_after_s``: the worker's /metrics shows
    ``stuck_files`` 1 and ``oldest_unfinished_seconds`` past the bound, ``status`` a stuck line
    naming the live holder; once the file is done both gauges are back at 0."""
    port = free_port()
    config = queue_config(queue={**LIVE, "metrics_port": port, "stuck_after_s": 1})
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=None, delay_s=6, times=1))
    start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: "write:post-dataset" in record(client, only_key(client)), what="the dataset POST")
    key = only_key(client)
    wait_for(lambda: scrape(port).get("offline_ingestor_stuck_files") == 1, 20, "stuck_files 1")
    assert scrape(port)["offline_ingestor_oldest_unfinished_seconds"] > 1
    status = ingestor_cli("status", "-c", str(config))
    line = next(line for line in status.stdout.splitlines() if line.startswith("stuck "))
    assert re.match(rf"stuck +{key}  running post-dataset for \d+ s, resumed 0x: held by live process ", line)
    assert line.endswith(f"  {path}"), line
    wait_for(lambda: record(client, key).get("state") == "done", 60, "the file to be done")

    def cleared() -> bool:
        samples = scrape(port)
        return (
            samples.get("offline_ingestor_stuck_files") == 0
            and samples.get("offline_ingestor_oldest_unfinished_seconds") == 0
        )

    wait_for(cleared, 20, "both gauges back at 0")
    assert "stuck " not in ingestor_cli("status", "-c", str(config)).stdout


def test_requeue_takes_over_queued_and_dead_held_files_only(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """With the reconciler off: ``requeue`` of a running key refuses while its holder lives;
    ``status`` explains a purged queued key and a key whose holder was SIGKILLed; ``requeue``
    of both (no failed entry) queues them and each ends with one dataset and one block."""
    config = queue_config(queue={**LIVE, "reconcile_interval_s": 3600, "stuck_after_s": 1})
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    purged = ymir_file(data_root, name="purged.hdf")
    ingestor_cli("enqueue", "-c", str(config), str(purged))
    assert ingestor_cli_celery(config, "purge", "-f").returncode == 0
    (queued_key,) = (str(name).removeprefix("oi:job:") for name in client.scan_iter("oi:job:*"))
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=None, delay_s=6, times=1))
    worker = start_worker(config)
    held = ymir_file(data_root, name="held.hdf")
    ingestor_cli("enqueue", "-c", str(config), str(held))
    names = lambda: {str(name).removeprefix("oi:job:") for name in client.scan_iter("oi:job:*")}  # noqa: E731
    wait_for(lambda: len(names()) == 2, what="the second record")
    (held_key,) = names() - {queued_key}
    wait_for(lambda: "write:post-dataset" in record(client, held_key), what="the dataset POST")
    alive = ingestor_cli("requeue", "-c", str(config), held_key)
    assert alive.stdout.startswith("already running (held by "), alive.stdout + alive.stderr
    worker.kill()
    wait_for(lambda: no_live_process(client), what="the dead worker's heartbeats to expire")
    status = ingestor_cli("status", "-c", str(config)).stdout
    assert re.search(
        rf"^stuck +{queued_key}  queued  for \d+ s, .*: no lease: waiting for a worker", status, re.M
    )
    assert re.search(rf"^stuck +{held_key}  running post-dataset .*: holder \S+ is dead", status, re.M), (
        status
    )
    result = ingestor_cli("requeue", "-c", str(config), queued_key, held_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["queued", "queued"], result.stdout
    start_worker(config)
    wait_for(lambda: states(client) == {"done": 2}, 90, "both files to be done")
    assert len(standin.datasets) == 2 and len(standin.origdatablocks) == 2


def test_a_step_waiting_for_scicat_never_looks_unmoved(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """A write step waiting for SciCat (breaker open) is retried with a countdown, and a retry
    can be in no list for a moment: the worker's main process has popped it (BRPOP) and acked
    its previous copy, and not yet put it in ``unacked`` (10-40 ms here). The reconciler must
    never find such a file unmoved (the chaos case's seed 40717 resumed one: two copies of its
    chain). Four files on two pool processes keep the main process busy enough to show it."""
    from offline_ingestor.config import load_config
    from offline_ingestor.queue.job_store import JobStore
    from offline_ingestor.worker.reconciler import Reconciler

    # The worker's own reconciler is slowed right down: this test looks with the same rules
    # thousands of times instead of twice a second, so a moment that fools it is found.
    scicat = {"timeout": 5, "outage_probe_s": 0.5, "outage_probe_max_s": 1}
    config = queue_config(queue={**LIVE, "reconcile_interval_s": 3600}, scicat=scicat)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    # SciCat refuses the dataset POST and its health probe answers 503: an outage.
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=503, times=None))
    standin.inject(Fault(path_regex=r"/health$", status=503, times=None))
    start_worker(config)
    paths = [ymir_file(data_root, name=f"w{index}.hdf") for index in range(4)]
    ingestor_cli("enqueue", "-c", str(config), *map(str, paths))

    def waits() -> dict[str, int]:
        """Waits for SciCat at post-dataset, per file."""
        names = list(client.scan_iter("oi:job:*"))
        return {str(name): int(client.hget(name, "waits:post-dataset") or 0) for name in names}

    wait_for(lambda: len(waits()) == 4 and min(waits().values()) > 0, 60, "every file waiting for SciCat")
    store = JobStore.from_url(redis_server.url)
    reconciler = Reconciler(None, load_config(config), lambda: store, lambda: 60.0)  # type: ignore[arg-type]
    looks, unmoved_at = 0, []
    until = time.monotonic() + 8
    while time.monotonic() < until:
        looks += 1
        unmoved = reconciler.unmoved_keys()
        if unmoved:
            unmoved_at.append((round(time.time(), 3), sorted(unmoved)))
    print(f"{looks} looks over {waits()} waits for SciCat; unmoved at {unmoved_at}")
    assert min(waits().values()) >= 4, "too few retries to have looked between them"
    assert not unmoved_at, f"a waiting file looked unmoved {len(unmoved_at)} times in {looks} looks"
    standin.clear_faults()
    wait_for(lambda: states(client) == {"done": 4}, 60, "every file to be done")
    assert len(standin.datasets) == 4 and len(standin.origdatablocks) == 4
