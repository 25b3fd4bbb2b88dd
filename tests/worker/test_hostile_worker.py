"""Hostile files through the real worker (issue 12, item 1): the outside value never reaches SciCat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import pytest
from worker.conftest import cli, wait_for

from helpers import ymir_file

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_external_link_out_of_the_root_goes_to_the_failed_registry(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    # Given a file in the root whose title is an external link to a file outside it
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as handle:
        handle["/entry/title"] = "OUTSIDE VALUE"
    path = ymir_file(data_root)
    with h5py.File(path, "a") as handle:
        del handle["/entry/title"]
        handle["/entry/title"] = h5py.ExternalLink(str(outside), "/entry/title")
    config = queue_config()
    start_worker(config)
    # When it is enqueued
    cli("enqueue", "-c", str(config), str(path))
    failed: list[dict[str, Any]] = []

    def registered() -> bool:
        failed[:] = json.loads(cli("failed", "-c", str(config), "--json").stdout)
        return bool(failed) or bool(standin.datasets)

    wait_for(registered, what="the failed registry entry (or a dataset)")
    # Then it fails at extract, once, naming the refusal; SciCat holds nothing
    assert not standin.datasets
    (entry,) = failed
    assert entry["step"] == "extract" and entry["error_class"] == "NexusReadError"
    assert "outside the allowed data roots: refused" in entry["message"]
    assert entry["attempts"] == 1
