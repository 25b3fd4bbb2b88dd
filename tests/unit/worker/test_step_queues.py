"""Which queue each step's message goes to (``worker/chain.py``, ``queue_of``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from offline_ingestor.config import Config, parse_config
from offline_ingestor.ingest.steps import STEPS
from offline_ingestor.worker.chain import queue_of


def config(**queue: Any) -> Config:
    return parse_config({"queue": {"enabled": True, "broker_url": "redis://127.0.0.1:1/0", **queue}})


def test_without_an_io_queue_every_step_is_on_the_main_queue(tmp_path: Path) -> None:
    """No ``io_queue_name``: one queue, whatever the file's size or the size bound."""
    big = tmp_path / "big.hdf"
    big.write_bytes(b"x" * 100)
    chosen = config(io_hash_min_bytes=10)
    assert {queue_of(step, chosen, str(big)) for step in STEPS} == {"ingest"}


def test_build_dataset_of_a_big_file_goes_to_the_io_queue(tmp_path: Path) -> None:
    """A file of at least ``io_hash_min_bytes`` is hashed by the I/O worker's threads; smaller
    files, other local steps, a file that is gone and the bound 0 keep the main queue."""
    big, small = tmp_path / "big.hdf", tmp_path / "small.hdf"
    with big.open("wb") as handle:
        os.truncate(handle.fileno(), 1 << 20)
    small.write_bytes(b"x" * 100)
    chosen = config(io_queue_name="ingest-io", io_hash_min_bytes=1 << 20)
    assert queue_of("build-dataset", chosen, str(big)) == "ingest-io"
    assert queue_of("build-dataset", chosen, str(small)) == "ingest"
    assert queue_of("build-dataset", chosen, str(tmp_path / "gone.hdf")) == "ingest"
    assert queue_of("extract", chosen, str(big)) == "ingest"
    assert queue_of("post-dataset", chosen, str(small)) == "ingest-io"
    off = config(io_queue_name="ingest-io")
    assert queue_of("build-dataset", off, str(big)) == "ingest"
