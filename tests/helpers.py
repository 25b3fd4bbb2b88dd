"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offline_ingestor.testing import scenario
from offline_ingestor.testing.nexus_factory import write_ess_file, write_nexus
from offline_ingestor.testing.processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
TEST_SCHEMAS = ROOT / "tests" / "data" / "schemas"
#: Short liveness timings (``queue`` config keys only) and a visibility timeout no test may wait
#: for: a dead worker's steps come back within seconds through heartbeats and the reconciler.
LIVE: dict[str, float] = {
    "visibility_timeout_s": 3600,
    "task_time_limit_s": 60,
    "retry_backoff_s": 0.1,
    "retry_backoff_max_s": 1,
    "heartbeat_interval_s": 0.3,
    "heartbeat_ttl_s": 1.5,
    "reconcile_interval_s": 0.5,
}


def ymir_file(data_root: Path, name: str = "run-0001.hdf", **kwargs: Any) -> Path:
    """A synthetic YMIR file where the ESS file writer would put it."""
    kwargs.setdefault("proposal", "876380")
    kwargs.setdefault("instrument", "YMIR")
    return write_ess_file(data_root / "ess/raw/ymir/2024/876380" / name, **kwargs)


def coverage_file(data_root: Path, name: str = "coverage-1.nxs") -> Path:
    """A file for tests/data/schemas/coverage.imsc.yml (every feature)."""
    path = data_root / "ess/raw/test/2024" / name
    write_ess_file(
        path,
        proposal="443503",
        title="Lego Test 1, cont",
        extra={
            "/entry/sample/temperature": 293.5,
            "/entry/instrument/detector/counts": [3, 4, 5],
            "/entry/instrument/detector/positions": [0.5, 1.5],
            "/entry/instrument/detector/frames": [7],
        },
    )
    import h5py

    with h5py.File(path, "r+") as handle:
        handle["/entry/sample/temperature"].attrs["units"] = "K"
    return path


def string_vds_file(data_root: Path) -> Path:
    """A YMIR file whose title is a fixed-string VDS over a vlen-string source: SIGSEGV."""
    folder = data_root / "ess/raw/ymir/2024/876380"
    path = ymir_file(data_root)
    with h5py.File(folder / "src.h5", "w") as handle:
        handle["names"] = np.array(["abc", "de"], dtype=h5py.string_dtype())
    layout = h5py.VirtualLayout(shape=(2,), dtype="S3")
    layout[:] = h5py.VirtualSource("src.h5", "names", shape=(2,))
    with h5py.File(path, "a") as handle:
        del handle["/entry/title"]
        handle.create_virtual_dataset("/entry/title", layout)
    return path


def linked_out_of_the_root(data_root: Path, outside: Path) -> Path:
    """A YMIR file in the root whose ``/entry/title`` is an external link to ``outside``."""
    with h5py.File(outside, "w") as handle:
        handle["/entry/title"] = "OUTSIDE VALUE"
    path = ymir_file(data_root)
    with h5py.File(path, "a") as handle:
        del handle["/entry/title"]
        handle["/entry/title"] = h5py.ExternalLink(str(outside), "/entry/title")
    return path


def schemas_with(tmp: Path, *files: Path) -> Path:
    """A schemas directory holding exactly ``files``."""
    directory = tmp / "schemas"
    directory.mkdir(exist_ok=True)
    for file in files:
        shutil.copy(file, directory / file.name)
    return directory


__all__ = [
    "ROOT",
    "TEST_SCHEMAS",
    "cli",
    "coverage_file",
    "ingestor_cli",
    "linked_out_of_the_root",
    "schemas_with",
    "string_vds_file",
    "wait_for",
    "write_config",
    "write_nexus",
    "ymir_file",
]


BIN = Path(sys.executable).parent


def write_config(path: Path, standin: Any, data_root: Path, **sections: Any) -> Path:
    """A YAML config like an operator's (shipped schemas); the password comes from the environment."""
    return scenario.write_config(path, standin.url_v3, data_root, **sections)


def cli(
    *args: str,
    config: Path | None = None,
    password: str = scenario.INGESTOR_PASSWORD,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one of our commands (``offline-ingestor``, ``scicat_background_ingestor``) as a user would."""
    env = {**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": password}
    if config is not None:
        env["OFFLINE_INGESTOR_CONFIG"] = str(config)
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, input=stdin, timeout=60
    )


def ingestor_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``offline-ingestor ARGS`` (the operator's command)."""
    return cli("offline-ingestor", *args, stdin=stdin)


def audit(config: Path, *args: str) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
    """``audit --json ARGS``: (exit code, class per file name or ``orphan:<name>``, every line)."""
    result = ingestor_cli("audit", "-c", str(config), "--json", *args)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    classes = {}
    for line in lines:
        if "class" in line:
            name = Path(line["file"]).name if line.get("file") else line["pid"]
            classes[f"orphan:{name}" if line["class"] == "orphan" else name] = line["class"]
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, classes, lines


#: A file writer job id for message files.
JOB_ID = "5f1a2b3c-0000-4000-8000-00000000abcd"


def upstream_message_file(
    nexus: Path, *, job_id: str = JOB_ID, error: bool = False, text: str | None = None, name: str = ""
) -> Path:
    """Where and how upstream's online ingestor writes the message for ``nexus``: ``json.dump`` of the
    ``WritingFinished`` that ess-streaming-data-types deserialises (a JSON array), in ``../ingestor``."""
    wrdn: Any = importlib.import_module("streaming_data_types")  # no type information

    message = wrdn.deserialise_wrdn(
        wrdn.serialise_wrdn("kafka-to-nexus", job_id, error, name or str(nexus), None, text)
    )
    path = nexus.parent / "../ingestor" / f"{nexus.stem}.message.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        json.dump(message, handle)
    return path.resolve()
