"""SIGKILL the worker (one pool process, or the whole worker) anywhere: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT, wait_for
from offline_ingestor.testing import Fault
from reliability.runs import Tally, enqueue_all, make_files, settled, store_of, tally, wait_settled

pytestmark = [pytest.mark.redis, pytest.mark.worker]

#: Schemas that select nothing but take ~20 ms each to parse: a pool process's first task
#: (select-schema) loads them, which gives a kill a window inside select-schema.
PADDING_SCHEMAS = 150


def job_state(config: Path) -> dict[str, str]:
    (record,) = store_of(config).records()
    return record.fields


def padded_schemas(tmp_path: Path) -> Path:
    directory = tmp_path / "padded-schemas"
    directory.mkdir()
    ymir = (ROOT / "schemas/ess-ymir.imsc.yml").read_text()
    shutil.copy(ROOT / "schemas/ess-ymir.imsc.yml", directory)
    selector = "    - filename:contains:/ymir/\n    - filename:contains:ymir"
    for index in range(PADDING_SCHEMAS):
        text = ymir.replace("id: 3d0c1f5e-ymir-offline-ingestor", f"id: padding-{index}")
        text = text.replace("order: 100", f"order: {1000 + index}")
        (directory / f"padding-{index:04d}.imsc.yml").write_text(
            text.replace(selector, f"    - filename:contains:/never-{index}/")
        )
    return directory


def at_step(step: str) -> Callable[[Path, Any], bool]:
    def check(config: Path, standin: Any) -> bool:
        fields = job_state(config)
        return fields.get("step") == step and fields.get("state") == "running"

    return check


def in_select_schema(config: Path, standin: Any) -> bool:
    # The run counter is the first thing a step task writes; the slow schema load follows.
    return store_of(config).step_runs("select-schema") > 0 and not job_state(config).get("step:select-schema")


#: point -> (how to open a window there, how to see the worker is in it)
POINTS: dict[str, tuple[str, Callable[[Path, Any], bool]]] = {
    "select-schema": ("padding schemas (slow first schema load)", in_select_schema),
    "extract": ("GET /proposals delayed 6 s", lambda config, standin: standin.pending_faults == 0),
    "build-dataset": ("1 GiB sparse file to hash", at_step("build-dataset")),
    "post-dataset": (
        "POST /datasets stored, answer delayed 6 s",
        lambda config, standin: len(standin.datasets) == 1,
    ),
    "between-posts": (
        "dataset stored; POST /origdatablocks held 6 s, then refused unstored",
        lambda config, standin: standin.pending_faults == 0 and len(standin.datasets) == 1,
    ),
    "post-origdatablock": (
        "POST /origdatablocks stored, answer delayed 6 s",
        lambda config, standin: len(standin.origdatablocks) == 1,
    ),
    "post-job": (
        "a schema with scicat_job; POST /jobs stored, answer delayed 6 s",
        lambda config, standin: len(standin.jobs) == 1,
    ),
}


def job_schemas(tmp_path: Path) -> Path:
    """The YMIR schema with a ``scicat_job`` section (docs/schema-language.md §11.2)."""
    directory = tmp_path / "job-schemas"
    directory.mkdir()
    section = "scicat_job:\n  type: ingest-followup\n  job_params: {dataset: <dataset_pid>}\n"
    (directory / "ymir.imsc.yml").write_text((ROOT / "schemas/ess-ymir.imsc.yml").read_text() + section)
    return directory


def prepare(point: str, standin: Any, fast_config: Any, tmp_path: Path, data_root: Path) -> tuple[Path, dict]:
    files = make_files(data_root, 1)
    ingestion: dict[str, Any] = {}
    if point == "select-schema":
        ingestion["schemas_directory"] = str(padded_schemas(tmp_path))
    elif point == "extract":
        standin.inject(Fault(method="GET", path_regex=r"/proposals/", status=None, delay_s=6))
    elif point == "build-dataset":
        os.truncate(next(iter(files)), 2**30)  # HDF5 ignores bytes past its end; hashing does not
    elif point == "post-dataset":
        standin.inject(
            Fault(method="POST", path_regex=r"/datasets$", status=None, delay_s=6, after_handling=True)
        )
    elif point == "between-posts":
        # A first block write lists nothing (the chain created the dataset), so the window is
        # the block POST itself, which never stores: SciCat has the dataset and no block.
        standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", status=503, delay_s=6))
    elif point == "post-origdatablock":
        standin.inject(
            Fault(method="POST", path_regex=r"/origdatablocks$", status=None, delay_s=6, after_handling=True)
        )
    elif point == "post-job":
        ingestion["schemas_directory"] = str(job_schemas(tmp_path))
        lost = Fault(method="POST", path_regex=r"/jobs$", status=None, delay_s=6, after_handling=True)
        standin.inject(lost)
    config = (
        fast_config(ingestion=ingestion, queue={"concurrency": 1})
        if ingestion
        else fast_config(queue={"concurrency": 1})
    )
    return config, files


def kill_children(worker: Any) -> None:
    for child in worker.children():
        os.kill(child, signal.SIGKILL)


def run_kill_case(
    point: str, how: str, standin: Any, fast_config: Any, start_worker: Any, tmp_path: Path, data_root: Path
) -> Tally:
    # Given a worker busy with one file at `point`
    config, files = prepare(point, standin, fast_config, tmp_path, data_root)
    worker = start_worker(config, concurrency=1)
    enqueue_all(config, files)
    _, inside = POINTS[point]
    wait_for(lambda: inside(config, standin), timeout=60, what=f"the worker to be inside {point}")
    # When it is SIGKILLed there (one pool process, or the whole worker and then restarted)
    if how == "child":
        kill_children(worker)
    else:
        worker.kill()
        start_worker(config, concurrency=1)
    # Then the file ends with exactly one dataset and one origdatablock
    try:
        wait_for(lambda: settled(config, 1) and tally(standin, files).lost == 0, timeout=90, what="the file")
    finally:
        print("stand-in requests:", *standin.requests, sep="\n  ")
    result = tally(standin, files)
    assert (result.lost, result.duplicated, result.datasets, result.blocks) == (0, 0, 1, 1)
    assert job_state(config)["state"] == "done"
    if point == "post-job":
        assert len(standin.jobs) == 1  # the lost process's job, found by its marker
    return result


def _kill_cases() -> list[Any]:
    """Every point with a pool process killed; the whole worker at the two POST points
    (at the others with ``-m slow``: each costs a restart and a redelivery)."""
    cases = [pytest.param(point, "child", id=f"{point}-child") for point in POINTS]
    for point in POINTS:
        fast = ("between-posts", "post-origdatablock", "post-job")
        slow = [] if point in fast else [pytest.mark.slow]
        cases.append(pytest.param(point, "worker", id=f"{point}-worker", marks=slow))
    return cases


@pytest.mark.parametrize(("point", "how"), _kill_cases())
def test_killed_at_each_step(
    point: str,
    how: str,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    tmp_path: Path,
    data_root: Path,
    figures: Any,
) -> None:
    """A pool process, or the whole worker (then restarted), SIGKILLed inside each step and
    between the POSTs: the step is redone, one dataset, one block."""
    figures(
        run_kill_case(point, how, standin, fast_config, start_worker, tmp_path, data_root),
        window=POINTS[point][0],
    )


@pytest.mark.parametrize(
    ("count", "kills"),
    [pytest.param(20, 6, id="20-files"), pytest.param(200, 30, id="200-files", marks=pytest.mark.slow)],
)
def test_random_kills(
    count: int, kills: int, standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """Files ingested while pool processes and whole workers are SIGKILLed at random: 0 lost, 0 doubled."""
    # Given many files and a SciCat that answers in ~30 ms (so kills land mid-step)
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "4")))
    files = make_files(data_root, count)
    standin.inject(Fault(status=None, delay_s=0.03, times=None))
    config = fast_config(queue={"concurrency": 2, "max_redeliveries": 20})
    worker = start_worker(config)
    enqueue_all(config, files)
    # When the worker is killed `kills` times at random moments (every fifth kill is the whole worker)
    done = 0
    for index in range(kills):
        time.sleep(rng.uniform(0.3, 1.5))
        if settled(config, count):
            break
        if index % 5 == 4:
            worker.kill()
            worker = start_worker(config)
        else:
            kill_children(worker)
        done += 1
    # Then every file ends with exactly one dataset and one origdatablock
    # Each kill may leave a write step to wait out its orphaned POST (scicat.timeout + 2 s,
    # ingest/executor.py) before it runs again, on top of a visibility timeout for whole-worker kills.
    orphan_wait = float(yaml.safe_load(config.read_text())["scicat"]["timeout"]) + 2
    budget = 60 + count + done * orphan_wait
    wait_settled(config, count, timeout=budget, what="all files to settle")
    result = tally(standin, files)
    figures(result, kills=done)
    assert not store_of(config).failures()
    assert (result.lost, result.duplicated) == (0, 0)
    assert result.datasets == result.blocks == count
