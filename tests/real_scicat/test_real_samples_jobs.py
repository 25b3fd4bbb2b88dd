"""Upstream's ADR-003 (create a missing sample) and ADR-004 (a job after each dataset) on the real backend.

Twenty files name one sample SciCat does not know; two workers ingest them, one is SIGKILLed
mid-run and SciCat too. SciCat must end with one sample, twenty datasets attached to it, one
job per dataset; a forced rerun of every file creates nothing.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import redis
from real_world import config_for, env_for, holdings, start_worker, ymir_folder

from helpers import BIN, ROOT, ymir_file
from offline_ingestor.ingest.jobs import JOB_MARKER
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.testing.processes import RedisServer, wait_for
from offline_ingestor.testing.real_scicat import RealScicat
from offline_ingestor.testing.real_scicat.accounts import JOB_TYPE

FILES = 20


def _schemas(tmp: Path, tag: str) -> Path:
    schemas = tmp / "schemas"
    schemas.mkdir()
    section = f"""
sample_attachment:
  query_sample_name: true
  create_missing: true
  fields:
    sampleCharacteristics: {{proposal: <proposal_id>}}
scicat_job:
  type: {JOB_TYPE}
  job_params:
    dataset: <dataset_pid>
    tag: {tag}
"""
    (schemas / "ymir.imsc.yml").write_text((ROOT / "schemas/ess-ymir.imsc.yml").read_text() + section)
    return schemas


def _samples(scicat: RealScicat, name: str) -> list[dict[str, Any]]:
    where = json.dumps({"where": {"description": name}})
    answer = scicat.admin.get(f"{scicat.url_v3}/samples", params={"filter": where}, timeout=30)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def _jobs(scicat: RealScicat, tag: str) -> list[dict[str, Any]]:
    where = json.dumps({"where": {"type": JOB_TYPE, "jobParams.tag": tag}, "limits": {"limit": 1000}})
    answer = scicat.admin.get(f"{scicat.base_url}/v4/jobs", params={"filter": where}, timeout=30)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def _datasets(scicat: RealScicat, data: Path) -> list[dict[str, Any]]:
    where = json.dumps({"where": {"sourceFolder": str(ymir_folder(data))}, "limits": {"limit": 1000}})
    answer = scicat.admin.get(f"{scicat.base_url}/v4/datasets", params={"filter": where}, timeout=30)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def _settled(scicat: RealScicat, data: Path, tag: str) -> bool:
    try:
        return len(_jobs(scicat, tag)) >= FILES and holdings(scicat, ymir_folder(data)).blocks >= FILES
    except Exception:  # the backend restarting
        return False


def _all_done(store: JobStore) -> bool:
    return store.counts().get("done", 0) == FILES


def test_adr_scenarios_twenty_files_one_new_sample_two_workers_kills(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """1 sample, 20 datasets attached to it, 20 jobs (one per dataset), 0 duplicates; a rerun adds nothing."""
    scicat, data = alive_scicat, tmp_path / "data"
    tag, name = uuid.uuid4().hex, f"ADR sample {uuid.uuid4().hex[:8]}"
    files = [ymir_file(data, f"run-{i:04d}.hdf", extra={"/entry/sample/name": name}) for i in range(FILES)]
    server = RedisServer(tmp_path / "redis").start()
    queue = {"max_retries": 40, "retry_backoff_max_s": 3}  # outlast SciCat's restart
    ingestion = {"schemas_directory": str(_schemas(tmp_path, tag))}
    config = config_for(
        tmp_path / "worker.yml",
        scicat.url_v3,
        data,
        "ingestor",
        redis=server,
        queue=queue,
        ingestion=ingestion,
    )
    store = JobStore(redis.Redis.from_url(server.url, decode_responses=True))
    workers = [start_worker(config, tmp_path, "ingestor", name=f"worker-{i}") for i in (1, 2)]
    enqueue = [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config)]
    try:
        ran = subprocess.run(
            [*enqueue, *map(str, files)], env=env_for("ingestor"), capture_output=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        wait_for(
            lambda: holdings(scicat, ymir_folder(data)).datasets >= 3, timeout=180, what="three datasets"
        )
        workers[0].kill()  # SIGKILL: its unacked steps go to the other worker
        scicat.kill()
        scicat.restart()
        workers.append(start_worker(config, tmp_path, "ingestor", name="worker-3"))
        wait_for(lambda: _settled(scicat, data, tag) and _all_done(store), timeout=600, what="20 files done")
        # The rerun: every file again, forced
        ran = subprocess.run(
            [*enqueue, "--force", *map(str, files)], env=env_for("ingestor"), capture_output=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        wait_for(lambda: _all_done(store), timeout=600, what="the rerun's 20 files done")
    finally:
        for worker in workers:
            worker.stop()
        server.stop(kill=True)
    (sample,) = _samples(scicat, name)
    datasets = _datasets(scicat, data)
    assert len(datasets) == FILES
    assert all(doc.get("sampleIds") == [sample["sampleId"]] for doc in datasets), datasets[0]
    found = holdings(scicat, ymir_folder(data))
    # 20 blocks over 20 datasets that each have one (none half written): one block each
    assert (found.datasets, found.blocks, found.half_written) == (FILES, FILES, 0)
    jobs = _jobs(scicat, tag)
    named = sorted(item["pid"] for job in jobs for item in job["jobParams"]["datasetList"])
    assert named == sorted(doc["pid"] for doc in datasets)  # one job per dataset, none twice
    assert len({job["jobParams"][JOB_MARKER] for job in jobs}) == FILES
    assert all(job["jobParams"]["dataset"] == job["jobParams"]["datasetList"][0]["pid"] for job in jobs)
