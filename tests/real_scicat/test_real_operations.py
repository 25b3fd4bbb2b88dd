"""Operations on the real backend: audit after an admin's damage, requests per file, the drop-in.

* ``audit`` classes what an admin did to SciCat (a second block, wrong totals, a deleted
  dataset, a deleted block), then ``--enqueue-missing --repair`` with a worker fixes all but
  the duplicate, which needs the admin again (tests/worker/test_audit_classes.py does every
  class against the stand-in).
* A warm worker process costs a new file its two POSTs, counted by a recording proxy.
* ``scicat_background_ingestor`` with upstream's ``config.sample.yml`` as it is and a
  ``WritingFinished`` message file written the way upstream's online ingestor writes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from real_world import Holdings, blocks_of, config_for, env_for, holdings, start_worker, ymir_folder

from helpers import BIN, JOB_ID, audit, upstream_message_file, ymir_file
from offline_ingestor.testing.processes import RedisServer, WorkerProcess, wait_for
from offline_ingestor.testing.real_scicat import RealScicat, find_shared
from offline_ingestor.testing.real_scicat.proxy import RecordingProxy
from offline_ingestor.testing.scenario import SCHEMAS_DIR


def _ingest_now(config: Path, path: Path) -> None:
    cmd = [str(BIN / "offline-ingestor"), "ingest-now", "-c", str(config), str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env_for("ingestor"), timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]


def _pids_by_file(scicat: RealScicat, data: Path) -> dict[str, str]:
    """File name -> pid of its dataset (as admin, from the blocks)."""
    where = json.dumps({"where": {"sourceFolder": str(ymir_folder(data))}})
    found = scicat.admin.get(f"{scicat.url_v3}/datasets", params={"filter": where}, timeout=30).json()
    return {
        Path(block["dataFileList"][0]["path"]).name: doc["pid"]
        for doc in found
        for block in blocks_of(scicat, doc["pid"])
    }


def _holds(scicat: RealScicat, data: Path, expected: Holdings) -> bool:
    return holdings(scicat, ymir_folder(data)) == expected


def _admin(scicat: RealScicat, method: str, path: str, body: Any = None) -> None:
    answer = scicat.admin.request(method, f"{scicat.url_v3}/{path}", json=body, timeout=30)
    assert answer.status_code < 300, (method, path, answer.status_code, answer.text[:500])


def test_audit_after_an_admins_damage_then_repair(alive_scicat: RealScicat, tmp_path: Path) -> None:
    """Four kinds of damage, four classes; --enqueue-missing --repair and a worker mend all but the
    duplicate block, which is left with the admin's DELETE (the audit never deletes)."""
    scicat, data = alive_scicat, tmp_path / "data"
    names = ("ok", "dup", "totals", "nodataset", "noblock")
    files = {name: ymir_file(data, f"{name}.hdf", job_id=str(uuid.uuid4())) for name in names}
    redis = RedisServer(tmp_path / "redis").start()
    config = config_for(tmp_path / "oi.yml", scicat.url_v3, data, "ingestor", redis=redis)
    worker = None
    try:
        for path in files.values():
            _ingest_now(config, path)
        pids = _pids_by_file(scicat, data)
        # The admin's damage, through SciCat's API.
        (block,) = blocks_of(scicat, pids["dup.hdf"])
        copy = {k: block[k] for k in ("datasetId", "size", "ownerGroup", "accessGroups")}
        copy["dataFileList"] = [
            {k: v for k, v in f.items() if k not in ("_id", "id")} for f in block["dataFileList"]
        ]
        _admin(scicat, "POST", "origdatablocks", copy)
        _admin(
            scicat, "PATCH", f"datasets/{quote(pids['totals.hdf'], safe='')}", {"size": 1, "numberOfFiles": 7}
        )
        # A whole delete: SciCat's DELETE of a dataset leaves its blocks (the test below keeps them).
        _admin(scicat, "DELETE", f"datasets/{quote(pids['nodataset.hdf'], safe='')}/origdatablocks")
        _admin(scicat, "DELETE", f"datasets/{quote(pids['nodataset.hdf'], safe='')}")
        (gone,) = blocks_of(scicat, pids["noblock.hdf"])
        _admin(scicat, "DELETE", f"origdatablocks/{quote(gone['_id'], safe='')}")

        code, classes, lines = audit(config)
        assert code == 1
        assert classes == {
            "ok.hdf": "ingested",
            "dup.hdf": "duplicate-blocks",
            "totals.hdf": "totals-mismatch",
            "nodataset.hdf": "missing",
            "noblock.hdf": "no-files",
        }, lines
        dup = next(line for line in lines if line.get("class") == "duplicate-blocks")
        assert len(dup["block_ids"]) == 2 and "origdatablocks/" in dup["admin"][0]

        worker = start_worker(config, tmp_path, "ingestor")
        repair = subprocess.run(
            [str(BIN / "offline-ingestor"), "audit", "-c", str(config), "--enqueue-missing", "--repair"],
            capture_output=True,
            text=True,
            env=env_for("ingestor"),
            timeout=180,
        )
        assert repair.returncode == 1, repair.stderr[-2000:]  # the duplicate is still there
        assert "patch " in repair.stdout, repair.stdout

        last: dict[str, str] = {}

        def settled() -> bool:
            last.update(audit(config)[1])
            return all(last.get(f"{name}.hdf") == "ingested" for name in names if name != "dup")

        try:
            wait_for(settled, timeout=120, what="every repairable file ingested", every=1.0)
        except AssertionError:
            raise AssertionError(f"not settled: {last}; repair said: {repair.stdout}") from None
        assert last["dup.hdf"] == "duplicate-blocks"
        # One dataset per file, one block each but the duplicate's two (SciCat added the second
        # block's totals to its dataset, so its totals match its blocks).
        assert holdings(scicat, ymir_folder(data)) == Holdings(5, 6, 0)
        after = _pids_by_file(scicat, data)
        assert after["nodataset.hdf"] == pids["nodataset.hdf"]  # the same pid again, from the file
    finally:
        if worker is not None:
            worker.stop()
        redis.stop(kill=True)


def test_dataset_deleted_without_its_blocks_is_reingested_once(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """An admin deletes only the dataset (its block stays in SciCat); audit --enqueue-missing and a
    worker re-create it: one dataset, one block."""
    scicat, data = alive_scicat, tmp_path / "data"
    path = ymir_file(data, job_id=str(uuid.uuid4()))
    redis = RedisServer(tmp_path / "redis").start()
    config = config_for(tmp_path / "oi.yml", scicat.url_v3, data, "ingestor", redis=redis)
    worker = start_worker(config, tmp_path, "ingestor")
    try:
        _ingest_now(config, path)
        (pid,) = _pids_by_file(scicat, data).values()
        _admin(scicat, "DELETE", f"datasets/{quote(pid, safe='')}")
        where = json.dumps({"where": {"datasetId": pid}})
        kept = scicat.admin.get(f"{scicat.url_v3}/origdatablocks", params={"filter": where}, timeout=30)
        assert len(kept.json()) == 1, kept.text  # SciCat kept the block
        assert audit(config)[1] == {path.name: "missing"}
        ingestor = subprocess.run(
            [str(BIN / "offline-ingestor"), "audit", "-c", str(config), "--enqueue-missing"],
            capture_output=True,
            env=env_for("ingestor"),
            timeout=180,
        )
        assert ingestor.returncode == 1, ingestor.stderr
        wait_for(lambda: audit(config)[1][path.name] not in ("missing", "queued", "running"), timeout=120)
        assert holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0)
    finally:
        worker.stop()
        redis.stop(kill=True)


def test_a_warm_worker_process_costs_a_new_file_three_requests(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """After warm-up (login, look-ups, rights probes, one GET-first dataset), each new file of the
    same proposal costs its dataset POST, the listing of the new dataset's blocks and its
    origdatablock POST, nothing else.

    The listing is the price of SciCat's dataset DELETE not cascading: a dataset re-created under
    its deterministic pid may hold the blocks of the deleted one (issue 25, the test above).
    """
    scicat, data = alive_scicat, tmp_path / "data"
    proxy = RecordingProxy(scicat.port).start()
    redis = RedisServer(tmp_path / "redis").start()
    # One pool process, so that every file meets the process the warm-up warmed.
    config = config_for(tmp_path / "oi.yml", proxy.url_v3, data, "ingestor", redis=redis)
    worker = WorkerProcess(
        config, tmp_path / "worker.log", tmp_path / "heartbeat", 1, env=env_for("ingestor")
    )
    worker.start()
    enqueue = [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config)]
    try:
        files = [ymir_file(data, f"run-{n:04d}.hdf", job_id=str(uuid.uuid4())) for n in range(6)]
        for count, batch in ((2, files[:2]), (6, files[2:])):
            ran = subprocess.run([*enqueue, *map(str, batch)], env=env_for("ingestor"), capture_output=True)
            assert ran.returncode == 0, ran.stderr
            wait_for(
                partial(_holds, scicat, data, Holdings(count, count, 0)), timeout=120, what=f"{count} files"
            )
            if count == 2:
                warm_up = proxy.counts()
                proxy.clear()
        counted = proxy.counts()
    finally:
        worker.stop()
        redis.stop(kill=True)
        proxy.stop()
    print(f"warm-up (2 files): {dict(warm_up)}\n4 new files: {dict(counted)}")
    assert warm_up["POST /api/v3/datasets"] == 2 and warm_up["GET /api/v3/datasets/{}"] >= 1, warm_up
    assert counted == {
        "POST /api/v3/datasets": 4,
        "GET /api/v3/datasets/{}/origdatablocks": 4,
        "POST /api/v3/origdatablocks": 4,
    }, counted


def test_drop_in_with_upstreams_sample_config_and_message_file(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """Upstream's config.sample.yml unchanged (its schemas folder beside it), the host as upstream's
    flag, the token from the environment, a WritingFinished message file: exit 0 twice, one dataset
    under the writer's job id, one block listing the data and message files and their hash files."""
    pytest.importorskip("streaming_data_types", reason="ess-streaming-data-types is in the [test] extra")
    shared = find_shared()
    assert shared is not None  # the session's backend came from there
    scicat, data = alive_scicat, tmp_path / "data"
    config = tmp_path / "upstream" / "config.yml"
    config.parent.mkdir()
    shutil.copyfile(shared / "reference/scicat-ingestor/resources/config.sample.yml", config)
    shutil.copytree(SCHEMAS_DIR, config.parent / "schemas")  # its `schemas_directory: schemas`
    nexus = ymir_file(data, job_id=JOB_ID)
    message = upstream_message_file(nexus)
    token = str(scicat.session("ingestor").headers["Authorization"]).removeprefix("Bearer ")
    env = {**env_for("ingestor"), "OFFLINE_INGESTOR_SCICAT_TOKEN": token}
    env.pop("OFFLINE_INGESTOR_SCICAT_PASSWORD")
    command = [
        str(BIN / "scicat_background_ingestor"),
        "-c",
        str(config),
        "--nexus-file",
        str(nexus),
        "--done-writing-message-file",
        str(message),
        "--scicat.host",
        scicat.url_v3,
    ]
    runs = [subprocess.run(command, capture_output=True, text=True, env=env, timeout=180) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0)
    (pid,) = _pids_by_file(scicat, data).values()
    dataset = scicat.admin.get(f"{scicat.url_v3}/datasets/{quote(pid, safe='')}", timeout=30).json()
    assert dataset["pid"] == f"20.500.12269/{JOB_ID}"
    assert dataset["scientificMetadata"]["job_id"]["value"] == JOB_ID
    (block,) = blocks_of(scicat, pid)
    listed = {Path(entry["path"]).name for entry in block["dataFileList"]}
    hashes = {f"{nexus.stem}.b2b", f"{message.stem}.b2b"}  # save_file_hash: true, one per listed file
    assert listed == {nexus.name, message.name, *hashes}, listed
