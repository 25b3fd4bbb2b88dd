"""Every ``--json`` output types its values: booleans as booleans, counts as numbers.

A real worker ingests one file and refuses another; then ``enqueue``, ``status`` (counts and
one record), ``failed`` and ``audit`` are read with ``--json`` and every value is walked: no
``"true"``/``"false"``/``"null"`` strings, no counts as digit strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import ingestor_cli, wait_for, ymir_file

pytestmark = [pytest.mark.redis, pytest.mark.worker]

#: Keys whose values are numbers wherever they appear.
NUMERIC = {"attempts", "failed_registry", "waiting", "queued", "refused", "already"}


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


def assert_typed(name: str, data: Any) -> None:
    for where, value in walk(data):
        assert not (isinstance(value, str) and value.lower() in ("true", "false", "null", "none")), (
            f"{name}{where} = {value!r}: a boolean or null as a string"
        )
        if where.rsplit(".", 1)[-1] in NUMERIC or where.startswith(".states."):
            assert isinstance(value, int) and not isinstance(value, bool), f"{name}{where} = {value!r}"


def json_of(*args: str) -> Any:
    out = ingestor_cli(*args)
    assert out.stdout.strip(), out.stderr
    text = out.stdout.strip()
    try:
        return json.loads(text)
    except ValueError:  # JSON lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_json_output_is_typed(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    config = str(queue_config())
    start_worker()
    good = ymir_file(data_root, name="good.hdf")
    bad = data_root / "bad.hdf"
    bad.write_bytes(b"not HDF5\n" * 64)
    enqueued = json_of("enqueue", "-c", config, "--json", str(good), str(bad))
    assert_typed("enqueue", enqueued)
    wait_for(lambda: len(json_of("failed", "-c", config, "--json")) == 1, 60, "the refused file")
    wait_for(lambda: len(standin.origdatablocks) == 1, 60, "the good file")

    (entry,) = json_of("failed", "-c", config, "--json")
    assert entry["transient"] is False and isinstance(entry["attempts"], int)
    assert_typed("failed", [entry])
    assert_typed("status", json_of("status", "-c", config, "--json"))
    for path in (good, bad):
        record = json_of("status", "-c", config, "--json", str(path))
        assert_typed(f"status {path.name}", record)
    assert_typed("audit", json_of("audit", "-c", config, "--json"))
