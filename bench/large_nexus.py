"""Extraction on a NeXus file with a multi-GB event dataset against the same file without it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .common import median, time_calls
from .corpus import ymir_dir

CHUNK_ELEMENTS = 1 << 20


def write_pair(data_root: Path, event_bytes: int) -> tuple[Path, Path]:
    """Two YMIR files with the same metadata; the second has ``/entry/detector/events``."""
    import h5py
    import numpy as np

    from offline_ingestor.testing.nexus_factory import write_ess_file

    directory = ymir_dir(data_root)
    small = write_ess_file(
        directory / "large-without.hdf", proposal="876380", instrument="YMIR", job_id="bench-large-without"
    )
    large = directory / f"large-with-{event_bytes >> 20}MiB.hdf"
    if not (large.exists() and large.stat().st_size >= event_bytes):
        write_ess_file(large, proposal="876380", instrument="YMIR", job_id="bench-large-with")
        elements = event_bytes // 8
        block = np.random.default_rng(1).integers(0, 1 << 40, CHUNK_ELEMENTS, dtype=np.int64)
        with h5py.File(large, "r+") as handle:
            events = handle.create_dataset(
                "/entry/detector/events", shape=(elements,), dtype="int64", chunks=(CHUNK_ELEMENTS,)
            )
            for start in range(0, elements, CHUNK_ELEMENTS):
                stop = min(start + CHUNK_ELEMENTS, elements)
                events[start:stop] = block[: stop - start]
    return small, large


def compare(rt: Any, small: Path, large: Path, repeat: int) -> dict[str, Any]:
    """Median time of ``steps.extract`` (after select-schema) on each file, interleaved."""
    from offline_ingestor.ingest.job import new_job
    from offline_ingestor.ingest.steps import extract, select_schema

    jobs = {
        name: select_schema(rt, new_job(path, rt.config.ingestion.allowed_data_roots))
        for name, path in (("small", small), ("large", large))
    }
    timings: dict[str, list[float]] = {"small": [], "large": []}
    for _ in range(repeat):
        for name, job in jobs.items():
            timings[name] += time_calls(functools.partial(extract, rt, job), 1)
    small_ms, large_ms = median(timings["small"]) * 1000, median(timings["large"]) * 1000
    return {
        "large_file_bytes": large.stat().st_size,
        "small_file_bytes": small.stat().st_size,
        "extract_small_ms": round(small_ms, 2),
        "extract_large_ms": round(large_ms, 2),
        "ratio": round(large_ms / small_ms, 3),
    }
