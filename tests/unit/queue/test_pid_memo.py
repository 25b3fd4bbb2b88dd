"""Where a command beside workers finds a pid SciCat rewrote (``queue/pid_memo.py``, fakeredis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from offline_ingestor.errors import QueueUnavailable, is_transient
from offline_ingestor.ingest.job import Job
from offline_ingestor.queue.pid_memo import CommandPidMemo, RedisPidMemo
from offline_ingestor.testing.scenario import make_config

SENT = "20.500.12269/sent"


@pytest.fixture
def config(tmp_path: Path) -> Any:
    return make_config("http://127.0.0.1:1/api/v3", tmp_path)


def job(tmp_path: Path) -> Job:
    return {"key": "k1", "file": str(tmp_path / "run.hdf")}


def test_a_command_finds_what_a_worker_kept(config: Any, tmp_path: Path) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    assert RedisPidMemo(client, config).keep(job(tmp_path), SENT, "proxy-1")
    assert CommandPidMemo(client, config).recall(job(tmp_path), SENT) == "proxy-1"


def test_a_worker_finds_what_a_command_kept(config: Any, tmp_path: Path) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    assert CommandPidMemo(client, config).keep(job(tmp_path), SENT, "proxy-1")
    assert client.keys("*") == []  # the command keeps its file, as without workers
    assert RedisPidMemo(client, config).recall(job(tmp_path), SENT) == "proxy-1"


class _Down(fakeredis.FakeRedis):
    def get(self, *_: Any, **__: Any) -> Any:
        raise redis.ConnectionError("Connection refused")


def test_redis_unreachable_is_transient_unless_the_file_answers(config: Any, tmp_path: Path) -> None:
    memo = CommandPidMemo(_Down(decode_responses=True), config)
    with pytest.raises(QueueUnavailable, match="cannot read the pid memo from Redis") as caught:
        memo.recall(job(tmp_path), SENT)  # "not kept" could be a second dataset
    assert is_transient(caught.value)
    assert memo.keep(job(tmp_path), SENT, "proxy-1")
    assert memo.recall(job(tmp_path), SENT) == "proxy-1"  # no Redis needed
