"""Files that change under the worker, and the identity SciCat sees (issue 12, items 2, 7, 8, 9)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from helpers import ymir_file
from offline_ingestor.errors import FileNotReady, IdempotencyConflict, InputFileError
from offline_ingestor.ingest.job import ingest_key, new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import build_dataset, extract, select_schema

NO_RETRY = RetryPolicy(max_retries=0, backoff_s=0.0, backoff_max_s=0.0)


def run(config: Any, path: Path) -> dict[str, Any]:
    rt = Runtime.from_config(config)
    return ingest(
        rt, new_job(path, config.ingestion.allowed_data_roots), policy=NO_RETRY, sleep=lambda _: None
    )


def secret_outside(tmp_path: Path, like: Path) -> Path:
    """A file outside the data root with different content."""
    target = tmp_path / "outside" / "secret.hdf"
    target.parent.mkdir()
    shutil.copy(like, target)
    with h5py.File(target, "a") as handle:
        handle.attrs["secret"] = "x" * 5000
    return target


class TestIdentityBetweenSteps:
    """Item 2: the root/identity check runs in every step that opens the file."""

    def test_symlink_swapped_in_before_build_dataset_is_refused(
        self, standin: Any, make_config: Any, data_root: Path, tmp_path: Path
    ) -> None:
        # Given a job past select-schema and extract
        config = make_config(standin)
        rt = Runtime.from_config(config)
        path = ymir_file(data_root)
        job = extract(rt, select_schema(rt, new_job(path, config.ingestion.allowed_data_roots)))
        # When the file is swapped for a symlink to a file outside the root
        outside = secret_outside(tmp_path, path)
        path.unlink()
        path.symlink_to(outside)
        # Then build-dataset refuses it instead of stating and hashing the outside file
        with pytest.raises(InputFileError, match="refused"):
            build_dataset(rt, job)

    def test_file_replaced_before_extract_is_refused(
        self, standin: Any, make_config: Any, data_root: Path, tmp_path: Path
    ) -> None:
        config = make_config(standin)
        rt = Runtime.from_config(config)
        path = ymir_file(data_root)
        job = select_schema(rt, new_job(path, config.ingestion.allowed_data_roots))
        other = ymir_file(data_root, name="other.hdf")
        os.replace(other, path)  # same path, another inode
        with pytest.raises(InputFileError, match="was replaced since select-schema"):
            extract(rt, job)
        with pytest.raises(InputFileError, match="was replaced since select-schema"):
            build_dataset(
                rt,
                {
                    **job,
                    **extract(rt, select_schema(rt, new_job(path, config.ingestion.allowed_data_roots))),
                    "identity": job["identity"],
                },
            )


class TestGrowingWhileHashed:
    """Item 7: size is taken again after hashing; a change is FileNotReady."""

    def test_file_growing_during_hashing_is_not_ready(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        config = make_config(standin)
        rt = Runtime.from_config(config)
        path = ymir_file(data_root)
        with h5py.File(path, "a") as handle:
            handle["/entry/padding"] = np.zeros(3 << 20, dtype="u1")  # several hashing buffers
        job = extract(rt, select_schema(rt, new_job(path, config.ingestion.allowed_data_roots)))
        grown = []

        def append_once(_count: int) -> None:  # a writer without HDF5 lock (cp, rsync)
            if not grown:
                with path.open("ab") as handle:
                    handle.write(b"\0" * 4096)
                grown.append(True)

        with pytest.raises(FileNotReady, match="changed while it was being read"):
            build_dataset(rt, job, progress=append_once)


class TestScicatIdentity:
    """Items 8 and 9: mtime never changes the SciCat identity; a changed file is reported."""

    def test_touch_then_rerun_with_generated_pid_makes_one_dataset(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        config = make_config(
            standin, dataset={"generate_dataset_pid": True, "default_owner_group": "ingestor"}
        )
        path = ymir_file(data_root)
        first = run(config, path)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        second = run(config, path)
        assert second["key"] != first["key"]  # the queue sees a new version...
        assert second["pid"] == first["pid"]  # ...SciCat the same dataset
        assert len(standin.datasets) == 1
        assert len(standin.origdatablocks) == 1

    def test_enqueued_before_it_existed_gets_the_same_pid(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        config = make_config(
            standin, dataset={"generate_dataset_pid": True, "default_owner_group": "ingestor"}
        )
        path = data_root / "ess/raw/ymir/2024/876380/late.hdf"
        early = new_job(path, config.ingestion.allowed_data_roots, must_exist=False)  # not written yet
        ymir_file(data_root, name="late.hdf")
        rt = Runtime.from_config(config)
        first = ingest(rt, early, policy=NO_RETRY, sleep=lambda _: None)
        second = run(config, path)
        assert first["key"] != second["key"]
        assert first["pid"] == second["pid"]
        assert len(standin.datasets) == 1

    def test_different_file_with_same_path_size_mtime_is_not_already_done(self, data_root: Path) -> None:
        """A restored/copied file with the same size and mtime gets another queue key."""
        path = ymir_file(data_root, title="first")
        key = ingest_key(path)
        stamp = path.stat()
        replacement = ymir_file(data_root, name="new.hdf", title="other")  # same length title
        os.replace(replacement, path)
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert path.stat().st_size == stamp.st_size
        assert ingest_key(path) != key

    def test_file_modified_after_ingestion_is_a_conflict_naming_the_field(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        config = make_config(
            standin, dataset={"generate_dataset_pid": True, "default_owner_group": "ingestor"}
        )
        path = ymir_file(data_root)
        first = run(config, path)
        with h5py.File(path, "a") as handle:
            handle["/entry/late_addition"] = "written after ingestion" * 100
        with pytest.raises(
            IdempotencyConflict, match=r"changed since it was catalogued .*size .*chk"
        ) as caught:
            run(config, path)
        assert first["pid"] in str(caught.value)
        assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1
