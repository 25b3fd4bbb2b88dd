"""Synthetic NeXus files for the worker benchmarks (small ESS-shaped YMIR files)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from offline_ingestor.testing.nexus_factory import write_ess_file

PROPOSAL = "876380"


def ymir_dir(data_root: Path) -> Path:
    """Where the ESS file writer puts YMIR files (the shipped ymir schema selects them)."""
    return data_root / "ess/raw/ymir/2024" / PROPOSAL


def small_files(data_root: Path, count: int, prefix: str = "run") -> list[Path]:
    """``count`` small files, reused from an earlier run when the manifest matches."""
    directory = ymir_dir(data_root)
    manifest = directory / f".{prefix}-manifest.json"
    if manifest.exists():
        paths = [Path(item) for item in json.loads(manifest.read_text())]
        if len(paths) == count and all(path.exists() for path in paths):
            return paths
    paths = [
        write_ess_file(
            directory / f"{prefix}-{index:05d}.hdf",
            proposal=PROPOSAL,
            instrument="YMIR",
            run_number=index,
            job_id=str(uuid.uuid4()),
        )
        for index in range(count)
    ]
    manifest.write_text(json.dumps([str(path) for path in paths]))
    return paths
