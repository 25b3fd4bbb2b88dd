"""A spooled request survives a power cut once ``Spool.put`` returns (issue 28, item 1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from offline_ingestor.ingest.job import Job
from offline_ingestor.queue.spool import Spool


def job(key: str = "k1") -> Job:
    return {"key": key, "file": "/data/run1.hdf", "job_id": None, "message_file": None}


def opened_path(fd: int) -> str:
    """The path an open descriptor names now (Linux)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def test_put_fsyncs_the_file_then_renames_then_fsyncs_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data on disk before the name points at it, and the name on disk before put() returns."""
    spool = Spool(tmp_path / "spool")
    calls: list[tuple[str, ...]] = []
    synced_sizes: list[int] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", opened_path(fd)))
        synced_sizes.append(os.fstat(fd).st_size)
        real_fsync(fd)

    def replace(source: Any, target: Any, **kwargs: Any) -> None:
        calls.append(("replace", os.path.realpath(source), os.path.realpath(target)))
        real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    request = spool.put(job())
    monkeypatch.undo()

    renames = [call[1] for call in calls if call[0] == "replace"]
    assert len(renames) == 1, calls
    temporary, directory = renames[0], os.path.realpath(spool.directory)
    assert calls == [
        ("fsync", temporary),
        ("replace", temporary, os.path.realpath(request.path)),
        ("fsync", directory),
    ]
    # The whole request was written when it was synced (an fsync before the JSON syncs nothing).
    assert synced_sizes[0] == request.path.stat().st_size > 0
    assert os.path.dirname(temporary) == directory


def test_a_failed_fsync_is_not_reported_as_spooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose bytes may not be on disk is refused (exit 75), not reported safe."""
    from offline_ingestor.errors import SpoolFull

    spool = Spool(tmp_path / "spool")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(SpoolFull, match="cannot write to spool"):
        spool.put(job())
    monkeypatch.undo()
    assert spool.count() == 0 and not list(spool.directory.iterdir())
