"""The drop-in as upstream's online ingestor runs it: real WRDN messages, upstream's flags.

Messages are made by the real ``ess-streaming-data-types`` package and written the way
upstream's ``scicat_kafka.save_message_to_file`` writes them (``json.dump`` of the
deserialised ``WritingFinished`` NamedTuple: a JSON array).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import JOB_ID, cli, upstream_message_file, write_config, ymir_file
from offline_ingestor.ingest.steps import PID_NAMESPACE

pytest.importorskip("streaming_data_types", reason="ess-streaming-data-types is in the [test] extra")


def drop_in(config: Path, nexus: Path, message: Path | None, *extra: str) -> Any:
    args = ["scicat_background_ingestor", *extra, "-c", str(config), "--nexus-file", str(nexus)]
    if message is not None:
        args += ["--done-writing-message-file", str(message)]
    return cli(*args)


def test_upstream_array_message_is_ingested_with_the_writer_job_id(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """The JSON array upstream writes gives the job id; the file is ingested once, exit 0."""
    config = write_config(tmp_path / "c.yml", standin, data_root, dataset={"generate_dataset_pid": True})
    nexus = ymir_file(data_root)
    message = upstream_message_file(nexus)
    assert json.loads(message.read_text())[1] == JOB_ID  # the array form, as upstream writes it
    first, second = drop_in(config, nexus, message), drop_in(config, nexus, message)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    (pid,) = standin.datasets
    assert pid.endswith(str(uuid.uuid5(PID_NAMESPACE, JOB_ID)))  # the key is the writer's job id
    (block,) = standin.origdatablocks
    assert str(message) in [entry["path"] for entry in block["dataFileList"]]


def test_upstream_message_is_enqueued_with_the_writer_job_id(
    standin: Any, data_root: Path, tmp_path: Path, redis_server: Any
) -> None:
    """With the queue enabled the array message's job id becomes the queued file's key."""
    config = write_config(
        tmp_path / "c.yml", standin, data_root, queue={"enabled": True, "broker_url": redis_server.url}
    )
    nexus = ymir_file(data_root)
    result = drop_in(config, nexus, upstream_message_file(nexus))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"queued: {JOB_ID}"


@pytest.mark.parametrize(
    "content",
    ["not json", "[1, 2]", '"a string"', '{"no": "job id"}', "\xff\xfe"],
    ids=["garbage", "short-array", "string", "object-without-job-id", "not-utf8"],
)
def test_unreadable_message_falls_back_to_the_path_key(
    standin: Any, data_root: Path, tmp_path: Path, content: str
) -> None:
    """A message we cannot use never fails the file: a warning, the path key, exit 0."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    nexus = ymir_file(data_root)
    message = data_root / "ingestor" / "run.message.json"
    message.parent.mkdir()
    message.write_bytes(content.encode("latin-1"))
    result = drop_in(config, nexus, message)
    assert result.returncode == 0, result.stderr
    assert "message_file." in result.stderr and "path-based key" in result.stderr
    assert len(standin.datasets) == 1


def test_message_for_another_file_is_not_used_as_the_key(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """A message naming another file warns, and its job id does not become this file's key."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    first, other = ymir_file(data_root), ymir_file(data_root, name="run-0002.hdf")
    message = upstream_message_file(other, name=str(first))  # says it is about run-0001
    result = drop_in(config, other, message)
    assert result.returncode == 0, result.stderr
    assert "message_file.other_file" in result.stderr
    assert not any(pid.endswith(str(uuid.uuid5(PID_NAMESPACE, JOB_ID))) for pid in standin.datasets)
    # ... so the first file, ingested with its own message later, is not "already done".
    again = drop_in(config, first, upstream_message_file(first))
    assert again.returncode == 0, again.stderr
    assert len(standin.datasets) == 2


def test_error_encountered_is_refused_with_the_writers_reason(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """error_encountered: true refuses the file (exit 1), naming the writer's message."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    nexus = ymir_file(data_root)
    result = drop_in(config, nexus, upstream_message_file(nexus, error=True, text="disk full"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "error_encountered: true" in last and "disk full" in last and "ingest-now" in last
    assert not standin.datasets


def test_upstream_config_flags_are_applied_or_ignored_with_a_warning(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """--scicat.host X overrides the file; --logging.verbose is accepted; unknown ones warn."""
    config = write_config(
        tmp_path / "c.yml", standin, data_root, scicat={"host": "http://127.0.0.1:9/api/v3", "max_retries": 0}
    )
    nexus = ymir_file(data_root)
    result = drop_in(
        config,
        nexus,
        upstream_message_file(nexus),
        "--logging.verbose",
        "--scicat.host",
        standin.url_v3,
        "--ingestion.file-handling.compute-file-stats",
        "--kafka.sasl-password",
        "secret",
        "--rabbitmq.enabled",
    )
    assert result.returncode == 0, result.stderr
    assert len(standin.datasets) == 1
    assert "upstream_flag.ignored" in result.stderr and "--rabbitmq.enabled" in result.stderr
    assert "secret" not in result.stderr


def test_bad_value_in_an_upstream_flag_is_a_config_error(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """A flag's value is validated like the file's: one line naming the key."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    nexus = ymir_file(data_root)
    result = drop_in(config, nexus, None, "--queue.concurrency", "zero")
    assert result.returncode == 1
    assert "queue.concurrency" in result.stderr.strip().splitlines()[-1]


# -- issue 12.3: the message file obeys the data file's rules ---------------------------------


def test_message_file_outside_the_data_roots_is_refused(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """A message file outside allowed_data_roots is refused before it is read or listed."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    nexus = ymir_file(data_root)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(["kafka-to-nexus", JOB_ID, False, str(nexus), None, None]))
    result = drop_in(config, nexus, outside)
    assert result.returncode == 1
    assert "outside the allowed data roots" in result.stderr.strip().splitlines()[-1]
    assert not standin.datasets


def test_fifo_message_file_does_not_hang(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """A FIFO as message file is not opened blocking: warning, path key, and not listed."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    nexus = ymir_file(data_root)
    fifo = data_root / "ingestor" / "run.message.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    result = drop_in(config, nexus, fifo)  # a hang ends in cli()'s timeout
    assert result.returncode == 0, result.stderr
    assert "not a regular file" in result.stderr
    (block,) = standin.origdatablocks
    assert str(fifo) not in [entry["path"] for entry in block["dataFileList"]]


def test_oversized_message_file_is_not_read(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """A message file above the size cap is neither parsed nor listed."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    nexus = ymir_file(data_root)
    big = data_root / "ingestor" / "run.message.json"
    big.parent.mkdir()
    big.write_text(json.dumps(["kafka-to-nexus", JOB_ID, False, str(nexus), "x" * (2 << 20), None]))
    result = drop_in(config, nexus, big)
    assert result.returncode == 0, result.stderr
    assert "more than the" in result.stderr
    assert not any(pid.endswith(str(uuid.uuid5(PID_NAMESPACE, JOB_ID))) for pid in standin.datasets)
    (block,) = standin.origdatablocks
    assert str(big) not in [entry["path"] for entry in block["dataFileList"]]
