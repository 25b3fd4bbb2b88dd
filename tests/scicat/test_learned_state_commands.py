"""One process per file (``ingest-now``, the drop-in) starts from what the last one learnt.

Each ``command_runtime`` stands for a new process of a command; they share the learned-state
file (``scicat/learned.py``). The requests a new file costs fall to the look-ups and the two
POSTs, and every exactly-once condition of POST-first (``ingest/writes.py``, ``_post_first``)
holds whether what it relies on was learnt now or read from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import ymir_file
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import command_runtime, ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.testing import ScicatStandin
from offline_ingestor.testing.scenario import seed

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def numbered_file(data_root: Path, n: int) -> Path:
    return ymir_file(data_root, f"run-{n:04d}.hdf", job_id=f"7a3e1c5b-0000-4000-8000-{n:012d}")


def new_process_ingests(config: Any, path: Path) -> dict[str, Any]:
    rt = command_runtime(config)
    return ingest(
        rt, new_job(path, config.ingestion.allowed_data_roots), policy=NO_WAIT, sleep=lambda _: None
    )


def requests_of(standin: Any, since: int) -> list[str]:
    return [
        f"{method} {path.removeprefix('/api/v3/').split('/')[0]}"
        for method, path, _ in standin.requests[since:]
    ]


def test_a_new_process_asks_only_for_what_it_writes(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    config = make_config(standin, scicat={"learned_state_dir": str(tmp_path / "learned")})
    new_process_ingests(config, numbered_file(data_root, 0))
    first = requests_of(standin, 0)
    assert "GET auth" in first and first.count("GET datasets") >= 2  # the pid's 404, the probe
    before = len(standin.requests)
    new_process_ingests(config, numbered_file(data_root, 1))
    assert sorted(requests_of(standin, before)) == [
        "GET datasets",  # the new dataset's blocks: a deleted dataset's may be there (issue 25)
        "GET instruments",
        "GET proposals",
        "POST auth",  # the login (a password account); a token account has none
        "POST datasets",
        "POST origdatablocks",
    ]
    assert len(standin.datasets) == 2 and len(standin.origdatablocks) == 2


def test_without_the_file_each_process_asks_again(standin: Any, make_config: Any, data_root: Path) -> None:
    config = make_config(standin, scicat={"learned_state_ttl_s": 0})
    new_process_ingests(config, numbered_file(data_root, 0))
    before = len(standin.requests)
    new_process_ingests(config, numbered_file(data_root, 1))
    again = requests_of(standin, before)
    assert "GET auth" in again and again.count("GET datasets") >= 2


def test_the_job_id_search_is_never_skipped_for_a_learnt_post_first(
    make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    with seed(ScicatStandin(drop_client_pids=True)) as scicat:
        # Given file 0 catalogued under a pid of SciCat's own (a proxy dropped ours back then)
        config = make_config(
            scicat,
            ingestion={"check_if_dataset_exists_by_metadata": True},
            scicat={"learned_state_dir": str(tmp_path / "learned")},
        )
        first = new_process_ingests(config, numbered_file(data_root, 0))
        # And SciCat keeping pids now, as the file says after two more new files
        scicat.drop_client_pids = False
        new_process_ingests(config, numbered_file(data_root, 1))
        new_process_ingests(config, numbered_file(data_root, 2))
        # When a new process re-runs file 0 (its records gone)
        rerun = new_process_ingests(config, numbered_file(data_root, 0))
        # Then it looked first and found it by its job id: no second dataset
        assert rerun["pid"] == first["pid"] and rerun["dataset_created"] is False
        assert len(scicat.datasets) == 3 and len(scicat.origdatablocks) == 3


def test_a_rewritten_pid_makes_the_next_processes_look_first(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    config = make_config(standin, scicat={"learned_state_dir": str(tmp_path / "learned")})
    new_process_ingests(config, numbered_file(data_root, 0))
    new_process_ingests(config, numbered_file(data_root, 1))  # the file now says: posts first
    # When SciCat starts prefixing pids, one process sees it on a new file
    standin.rewrite_pid_prefix = "proxy-"
    assert new_process_ingests(config, numbered_file(data_root, 2))["pid"].startswith("proxy-")
    # Then a new process re-running file 0 looks its pid up (found) instead of posting it
    before = len(standin.requests)
    rerun = new_process_ingests(config, numbered_file(data_root, 0))
    assert rerun["dataset_created"] is False and not rerun["pid"].startswith("proxy-")
    assert "POST datasets" not in requests_of(standin, before)
    assert len(standin.datasets) == 3 and len(standin.origdatablocks) == 3
