"""Every account type x API v3/v4 x first run, rerun, rerun with Redis records lost, on the real backend.

Each cell ingests one YMIR file with one account, through ``ingest-now`` (each run a new
process: nothing survives between runs) or through the worker (enqueue; enqueue again; Redis
FLUSHALL, enqueue again), then counts as admin what SciCat holds for the file's folder.
``PYTHONPATH=tests python tests/real_scicat/test_real_account_matrix.py`` prints RELIABILITY.md's table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from real_world import Holdings, config_for, env_for, holdings, start_real, start_worker, ymir_folder

from helpers import BIN, ymir_file
from offline_ingestor.testing.processes import RedisServer, wait_for
from offline_ingestor.testing.real_scicat import RealScicat

#: account type -> (username, config sections); YMIR's files belong to ess_proposal_876380.
ACCOUNT_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "admin": ("admin", {}),
    "ingestor in ADMIN_GROUPS": ("ingestor", {}),
    "plain create group, no pid": (
        "user1ymir",
        {"dataset": {"allow_dataset_pid": False}, "ingestion": {"check_if_dataset_exists_by_metadata": True}},
    ),
    "with-pid group, own group": ("ownymir", {}),
    "privileged, reads the file's group": ("privymir", {}),
    "privileged only, other group": ("privingest", {}),
}
#: The accounts that may not read back what they create: the project refuses their reruns.
NO_READ_BACK = {"privileged only, other group"}


@dataclass
class Cell:
    holdings: Holdings
    runs: list[str] = field(default_factory=list)  # "exit N: last line" per run


def _run(command: list[str], user: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env_for(user), timeout=180)
    out = result.stdout.strip() if result.returncode == 0 else result.stderr.strip()
    lines = (out or "-").splitlines()
    return f"exit {result.returncode}: {lines[-1][:160]}"


def ingest_now_cell(scicat: RealScicat, tmp: Path, account: str, api: str) -> Cell:
    """Three ``ingest-now`` runs of one file (new processes: the rerun has no records)."""
    user, sections = ACCOUNT_TYPES[account]
    data = tmp / "data"
    path = ymir_file(data)
    config = config_for(tmp / "oi.yml", scicat.url_v3, data, user, scicat={"api_version": api}, **sections)
    cmd = [str(BIN / "offline-ingestor"), "ingest-now", "-c", str(config), str(path)]
    runs = [_run(cmd, user) for _ in range(3)]
    return Cell(holdings(scicat, ymir_folder(data)), runs)


def _state(config: Path, path: Path, user: str) -> str:
    cmd = [str(BIN / "offline-ingestor"), "status", "-c", str(config), "--json", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env_for(user), timeout=60)
    try:
        return str(json.loads(result.stdout).get("state"))
    except ValueError:
        return "unknown"


def worker_cell(scicat: RealScicat, tmp: Path, account: str, api: str) -> Cell:
    """Enqueue, enqueue again once done, then FLUSHALL Redis and enqueue again (a worker)."""
    user, sections = ACCOUNT_TYPES[account]
    data = tmp / "data"
    path = ymir_file(data)
    redis = RedisServer(tmp / "redis").start()
    config = config_for(
        tmp / "worker.yml", scicat.url_v3, data, user, redis=redis, scicat={"api_version": api}, **sections
    )
    worker = start_worker(config, tmp, user)
    enqueue = [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config), str(path)]
    runs = []
    try:
        for step in ("first", "rerun", "records lost"):
            if step == "records lost":
                subprocess.run(
                    ["redis-cli", "-p", str(redis.port), "FLUSHALL"], check=True, capture_output=True
                )
            runs.append(_run(enqueue, user))
            wait_for(
                lambda: _state(config, path, user) in ("done", "failed"),
                timeout=120,
                what=f"{step}: done or failed",
            )
            runs[-1] += f" -> {_state(config, path, user)}"
    finally:
        worker.stop()
        redis.stop(kill=True)
    return Cell(holdings(scicat, ymir_folder(data)), runs)


@pytest.mark.parametrize("api", ["v3", "v4"])
@pytest.mark.parametrize("account", list(ACCOUNT_TYPES))
@pytest.mark.parametrize("mode", ["ingest-now", "worker"])
def test_account_matrix(alive_scicat: RealScicat, tmp_path: Path, account: str, api: str, mode: str) -> None:
    """Never a duplicate; one whole dataset for every account that reads back; refusals say why."""
    measure = ingest_now_cell if mode == "ingest-now" else worker_cell
    cell = measure(alive_scicat, tmp_path, account, api)
    print(cell)
    assert cell.holdings.duplicated == 0, cell
    if account in NO_READ_BACK:
        # It may not read the proposal (or what it wrote) back: refused with SciCat's answer,
        # nothing half-written is left unreported.
        assert cell.holdings.datasets <= 1 and cell.holdings.half_written == 0, cell
        refused = (lambda run: run.endswith("-> failed")) if mode == "worker" else (lambda run: "403" in run)
        assert all(refused(run) for run in cell.runs), cell
    else:
        assert cell.holdings == Holdings(1, 1, 0), cell
        assert all(run.startswith("exit 0") for run in cell.runs), cell
        if mode == "worker":
            assert all(run.endswith("-> done") for run in cell.runs), cell


def main() -> None:
    """Print RELIABILITY.md's table (starts its own backend)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        scicat = start_real(Path(tmp) / "scicat")
        try:
            print("| account type | API | driven by | datasets | blocks | duplicated | half-written | runs |")
            print("|---|---|---|---:|---:|---:|---:|---|")
            for account in ACCOUNT_TYPES:
                for api in ("v3", "v4"):
                    for mode, measure in (("ingest-now", ingest_now_cell), ("worker", worker_cell)):
                        cell_dir = Path(tempfile.mkdtemp(dir=tmp))
                        cell = measure(scicat, cell_dir, account, api)
                        h = cell.holdings
                        runs = "; ".join(run.replace("|", "/") for run in cell.runs)
                        print(
                            f"| {account} | {api} | {mode} | {h.datasets} | {h.blocks} | {h.duplicated} "
                            f"| {h.half_written} | {runs} |"
                        )
        finally:
            scicat.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
