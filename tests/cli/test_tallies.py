"""Summaries at the end of commands that handle many things."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import cli, write_config, ymir_file


@pytest.mark.redis
def test_enqueue_of_many_paths_ends_with_a_tally(
    tmp_path: Path, standin: Any, data_root: Path, redis_server: Any
) -> None:
    """stdout: one line per path (for scripts); stderr: the counts per outcome."""
    config = write_config(tmp_path / "c.yml", standin, data_root, queue={"broker_url": redis_server.url})
    first, second = ymir_file(data_root, name="t1.hdf"), ymir_file(data_root, name="t2.hdf")
    assert cli("offline-ingestor", "enqueue", str(first), config=config).returncode == 0
    paths = f"{first}\n{second}\n/etc/passwd\n{data_root / 'missing.hdf'}\n"
    result = cli("offline-ingestor", "enqueue", config=config, stdin=paths)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 4
    assert result.stderr.strip().splitlines()[-1] == "enqueue: 4 paths: 1 queued, 1 already, 2 refused"


def test_schemas_check_of_a_folder_without_schemas_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a schema\n")
    result = cli("offline-ingestor", "schemas", "check", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: no *.imsc.yml found in {tmp_path}"
