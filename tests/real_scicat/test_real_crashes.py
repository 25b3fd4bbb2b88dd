"""SIGKILLs on the real backend: the worker's and SciCat's, including between a block and its totals.

SciCat creates an origdatablock in two database writes (insert the block, then ``$inc`` the
dataset's totals). The session backend's database tripwire kills it exactly between the two
(``testing/real_scicat/tripwire.py``), so the state the project must repair is there every
time: a dataset with its block and totals of 0.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from real_world import Holdings, blocks_of, config_for, env_for, holdings, start_worker, ymir_folder

from helpers import BIN, ymir_file
from offline_ingestor.testing.processes import RedisServer, wait_for
from offline_ingestor.testing.real_scicat import RealScicat


def _ingest_now(config: Path, path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "offline-ingestor"), "ingest-now", "-c", str(config), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env_for("ingestor"), timeout=180)


def _half_written_as_killed(scicat: RealScicat, data: Path) -> None:
    """The kill left exactly the state it models: one dataset, its block, totals not updated."""
    where = ymir_folder(data)
    found = holdings(scicat, where)
    assert (found.datasets, found.blocks, found.half_written) == (1, 1, 1), found


def test_ingest_now_scicat_killed_between_block_and_totals(alive_scicat: RealScicat, tmp_path: Path) -> None:
    """ingest-now: SciCat dies after storing the block; the rerun repairs the totals, adds nothing."""
    scicat, data = alive_scicat, tmp_path / "data"
    path = ymir_file(data)
    config = config_for(tmp_path / "oi.yml", scicat.url_v3, data, "ingestor")
    assert scicat.tripwire is not None
    scicat.tripwire.arm()
    first = _ingest_now(config, path)
    assert scicat.tripwire.fired.is_set(), first.stderr[-2000:]
    assert first.returncode != 0 and "error" in first.stderr.lower(), first
    scicat.restart()
    _half_written_as_killed(scicat, data)
    second = _ingest_now(config, path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0)


def test_worker_scicat_killed_between_block_and_totals(alive_scicat: RealScicat, tmp_path: Path) -> None:
    """The worker: SciCat dies after storing the block and comes back; the retry repairs the totals."""
    scicat, data = alive_scicat, tmp_path / "data"
    path = ymir_file(data)
    redis = RedisServer(tmp_path / "redis").start()
    queue = {"max_retries": 40, "retry_backoff_max_s": 3}  # outlast the restart (see below)
    config = config_for(tmp_path / "worker.yml", scicat.url_v3, data, "ingestor", redis=redis, queue=queue)
    worker = start_worker(config, tmp_path, "ingestor")
    assert scicat.tripwire is not None
    scicat.tripwire.arm()
    try:
        enqueue = [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config), str(path)]
        assert (
            subprocess.run(enqueue, env=env_for("ingestor"), capture_output=True, timeout=60).returncode == 0
        )
        wait_for(scicat.tripwire.fired.is_set, timeout=120, what="the kill between block and totals")
        scicat.restart()
        wait_for(lambda: holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0), timeout=120, what="repair")
    finally:
        worker.stop()
        redis.stop(kill=True)


def test_queue_run_with_worker_and_scicat_sigkills(alive_scicat: RealScicat, tmp_path: Path) -> None:
    """Eight files; the worker and SciCat SIGKILLed mid-run, then SciCat again between a block and
    its totals (a ninth file, enqueued once the tripwire is armed): each file once and whole."""
    scicat, data = alive_scicat, tmp_path / "data"
    files = [ymir_file(data, f"run-{i:04d}.hdf") for i in range(9)]
    redis = RedisServer(tmp_path / "redis").start()
    # Retries outlast a backend restart (seconds to tens of seconds on a loaded machine): with
    # the test default (6 retries, <= 2 s apart) files would end in the failed registry, as designed.
    queue = {"max_retries": 40, "retry_backoff_max_s": 3}
    config = config_for(tmp_path / "worker.yml", scicat.url_v3, data, "ingestor", redis=redis, queue=queue)
    worker = start_worker(config, tmp_path, "ingestor", name="worker-1")
    enqueue = [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config)]
    ran = subprocess.run(
        [*enqueue, *map(str, files[:8])], env=env_for("ingestor"), capture_output=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    second = None
    try:
        wait_for(lambda: holdings(scicat, ymir_folder(data)).datasets >= 2, timeout=120, what="two datasets")
        worker.kill()  # SIGKILL: its running steps are redelivered to the next worker
        scicat.kill()
        second = start_worker(config, tmp_path, "ingestor", name="worker-2")
        scicat.restart()
        wait_for(lambda: holdings(scicat, ymir_folder(data)).blocks == 8, timeout=240, what="eight blocks")
        assert scicat.tripwire is not None
        scicat.tripwire.arm()  # the ninth file's block is stored, its totals never are: SciCat dies
        ran = subprocess.run(
            [*enqueue, str(files[8])], env=env_for("ingestor"), capture_output=True, timeout=60
        )
        assert ran.returncode == 0, ran.stderr
        wait_for(scicat.tripwire.fired.is_set, timeout=120, what="the kill between block and totals")
        scicat.restart()
        wait_for(
            lambda: holdings(scicat, ymir_folder(data)) == Holdings(9, 9, 0), timeout=240, what="all 9 whole"
        )
    finally:
        for each in (worker, second):
            if each is not None:
                each.stop()
        redis.stop(kill=True)
    assert all(len(blocks_of(scicat, pid)) == 1 for pid in _pids(scicat, data))


def _pids(scicat: RealScicat, data: Path) -> list[str]:
    import json

    where = json.dumps({"where": {"sourceFolder": str(ymir_folder(data))}})
    return [d["pid"] for d in scicat.admin.get(f"{scicat.url_v3}/datasets", params={"filter": where}).json()]
