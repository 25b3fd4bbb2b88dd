"""What the real-backend tests share: what SciCat holds (as admin), configs, a mirrored stand-in."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from offline_ingestor.testing import Account, ScicatStandin
from offline_ingestor.testing.processes import RedisServer, WorkerProcess, wait_for
from offline_ingestor.testing.pytest_plugin import TEST_QUEUE
from offline_ingestor.testing.real_scicat import BackendMissing, RealScicat, ensure_built, find_shared
from offline_ingestor.testing.real_scicat.accounts import ACCOUNTS, GROUP_ENV, PASSWORDS, PROPOSALS
from offline_ingestor.testing.scenario import write_config


@dataclass
class Holdings:
    """What SciCat holds for one source folder, counted as admin."""

    datasets: int
    blocks: int
    half_written: int  # a dataset without a block, or whose totals are not its blocks' sums

    @property
    def duplicated(self) -> int:
        return max(0, self.datasets - 1) + max(0, self.blocks - self.datasets)


def holdings(scicat: RealScicat, source_folder: Path) -> Holdings:
    """Datasets of ``source_folder`` and their blocks, as the admin account sees them."""
    where = json.dumps({"where": {"sourceFolder": str(source_folder)}})
    answer = scicat.admin.get(f"{scicat.url_v3}/datasets", params={"filter": where}, timeout=30)
    answer.raise_for_status()
    datasets: list[dict[str, Any]] = answer.json()
    blocks = half = 0
    for doc in datasets:
        own = blocks_of(scicat, doc["pid"])
        blocks += len(own)
        size = sum(b["size"] for b in own)
        files = sum(len(b["dataFileList"]) for b in own)
        half += int(not own or doc.get("size") != size or doc.get("numberOfFiles") != files)
    return Holdings(len(datasets), blocks, half)


def ymir_folder(data_root: Path) -> Path:
    """The ``sourceFolder`` the shipped YMIR schema gives files under ``data_root`` (unique per test)."""
    return data_root / "ess/data/ymir/2024"


def blocks_of(scicat: RealScicat, pid: str) -> list[dict[str, Any]]:
    """The dataset's origdatablocks (admin)."""
    answer = scicat.admin.get(f"{scicat.url_v3}/datasets/{_quote(pid)}/origdatablocks", timeout=30)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def _quote(pid: str) -> str:
    return quote(pid, safe="")


def config_for(
    path: Path, url_v3: str, data_root: Path, user: str, *, redis: RedisServer | None = None, **sections: Any
) -> Path:
    """An operator's config for ``user`` on ``url_v3`` (and a worker's queue on ``redis``)."""
    scicat = {"username": user, "max_retries": 0, **sections.pop("scicat", {})}
    if redis is not None:
        sections["queue"] = {
            **TEST_QUEUE,
            "broker_url": redis.url,
            "heartbeat_file": str(path.parent / "heartbeat"),
            **sections.get("queue", {}),
        }
    return write_config(path, url_v3, data_root, scicat=scicat, **sections)


def env_for(user: str) -> dict[str, str]:
    return {**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": PASSWORDS[user]}


def start_worker(config: Path, tmp: Path, user: str, name: str = "worker") -> WorkerProcess:
    """A real Celery worker (prefork, 2 processes) for ``config``, logged in as ``user``."""
    return WorkerProcess(config, tmp / f"{name}.log", tmp / "heartbeat", 2, env=env_for(user)).start()


def mirrored_standin(real: RealScicat) -> ScicatStandin:
    """A stand-in configured like ``real``: the same accounts, groups, proposals, instruments."""
    split = {key: GROUP_ENV[key].split(",") for key in GROUP_ENV if key.endswith("GROUPS")}
    standin = ScicatStandin(
        [
            Account(name, PASSWORDS[name], roles=roles, global_access=is_global)
            for name, (roles, is_global) in ACCOUNTS.items()
        ],
        admin_groups=split["ADMIN_GROUPS"],
        create_dataset_groups=split["CREATE_DATASET_GROUPS"],
        with_pid_groups=split["CREATE_DATASET_WITH_PID_GROUPS"],
        privileged_groups=split["CREATE_DATASET_PRIVILEGED_GROUPS"],
        delete_groups=split["DELETE_GROUPS"],
        pid_prefix=GROUP_ENV["PID_PREFIX"],
    )
    for proposal in PROPOSALS:
        standin.add_proposal(proposal)
    # The real backend chose the instruments' pids: the stand-in serves the same documents.
    for instrument in real.admin.get(f"{real.url_v3}/instruments", timeout=30).json():
        standin.add_instrument({k: v for k, v in instrument.items() if k not in ("_id", "__v")})
    return standin.start()


def wait_settled(check: Any, timeout: float = 120.0, what: str = "the worker") -> None:
    """Poll ``check`` (tolerating a backend that is restarting) until it holds."""
    wait_for(check, timeout=timeout, what=what, every=0.5)


def _skip_reason() -> str | None:
    if find_shared() is None:
        return "../shared not found beside the checkout: the real SciCat backend tier needs its archive"
    if shutil.which("node") is None:
        return "Node.js not installed: the real SciCat backend tier needs `node` (>= 20)"
    return None


def start_real(run_dir: Path, *, tripwire: bool = True) -> RealScicat:
    """Build (once; the time is reported) and start a backend, or skip/fail as the tier's rules say."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    try:
        backend = ensure_built()
    except BackendMissing as exc:
        pytest.fail(str(exc))
    built = time.monotonic()
    scicat = RealScicat(run_dir, backend=backend, tripwire=tripwire).start()
    print(f"real SciCat: build check {built - started:.1f} s, start {time.monotonic() - built:.1f} s")
    return scicat
