"""The producer's local spool (queue/spool.py) and how Redis errors are sorted (queue/connection.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis
from kombu.exceptions import OperationalError
from kombu.utils.json import JSONEncoder

from offline_ingestor.config import parse_config
from offline_ingestor.errors import ConfigError, QueueUnavailable, ScicatRejected, SpoolFull
from offline_ingestor.ingest.job import Job
from offline_ingestor.queue.connection import broker_settings, describe, redact, redis_failure, sentinel_spec
from offline_ingestor.queue.spool import Spool, SpooledRequest


def job(key: str = "k1", file: str = "/data/run1.hdf") -> Job:
    return {"key": key, "file": file, "job_id": None, "message_file": None}


# -- spool ------------------------------------------------------------------------------------


def test_put_writes_one_complete_file_per_request(tmp_path: Path) -> None:
    """Each request is one JSON file holding the job, force flag and claim id; no temp files left."""
    spool = Spool(tmp_path / "spool")
    spool.put(job("a"), claim="c1")
    spool.put(job("b"), force=True, claim="c2")
    names = sorted(os.listdir(spool.directory))
    assert len(names) == 2 and all(name.endswith(".json") for name in names)
    first = spool.read(spool.paths()[0])
    assert (first.job["key"], first.force, first.claim) == ("a", False, "c1")
    assert json.loads(spool.paths()[1].read_text())["force"] is True


def test_full_spool_refuses_with_a_clear_transient_error(tmp_path: Path) -> None:
    """Beyond max_files the spool raises SpoolFull (exit 75) naming the folder and the limit."""
    spool = Spool(tmp_path / "spool", max_files=2)
    spool.put(job("a"))
    spool.put(job("b"))
    with pytest.raises(SpoolFull) as caught:
        spool.put(job("c"), reason="Redis down")
    assert isinstance(caught.value, QueueUnavailable)
    assert "spool full: 2 requests" in str(caught.value) and "spool_max_files 2" in str(caught.value)
    assert spool.count() == 2


def test_flush_sends_oldest_first_and_removes_only_what_was_sent(tmp_path: Path) -> None:
    """A flush stops at the first transient error and leaves that request and the rest."""
    spool = Spool(tmp_path / "spool")
    for key in ("a", "b", "c"):
        spool.put(job(key))
    seen: list[str] = []

    def submit(request: SpooledRequest) -> str:
        seen.append(request.job["key"])
        if request.job["key"] == "b":
            raise QueueUnavailable("cannot reach Redis")
        return "queued"

    result = spool.flush(submit)
    assert seen == ["a", "b"]
    assert [request.job["key"] for request, _ in result.sent] == ["a"]
    assert (result.left, result.stopped) == (2, "cannot reach Redis")
    assert [spool.read(path).job["key"] for path in spool.paths()] == ["b", "c"]


def test_flush_lets_permanent_errors_through_and_keeps_the_request(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(job("a"))

    def submit(request: SpooledRequest) -> str:
        raise ScicatRejected("no", status=400)

    with pytest.raises(ScicatRejected):
        spool.flush(submit)
    assert spool.count() == 1


def test_a_sent_request_that_cannot_be_removed_does_not_hold_up_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request sent but left in place (no write access) is reported; the next ones go too."""
    # Given two requests, the older one in a file the flusher may not remove
    spool = Spool(tmp_path / "spool")
    spool.put(job("a"), claim="c1")
    spool.put(job("b"), claim="c2")
    stuck = spool.paths()[0]
    unlink = Path.unlink

    def refuse(path: Path, missing_ok: bool = False) -> None:
        if path == stuck:
            raise PermissionError(13, "Permission denied")
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    # When the spool is flushed
    result = spool.flush(lambda request: "queued")
    # Then both were sent, the stuck one is reported and stays, the other is gone
    assert [request.job["key"] for request, _ in result.sent] == ["a", "b"]
    assert len(result.stuck) == 1 and "Permission denied" in result.stuck[0]
    assert spool.paths() == [stuck]


def test_unreadable_request_is_quarantined_not_retried(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(job("a"))
    broken = spool.directory / "00000000000000000001-broken.json"
    broken.write_text("{not json")
    result = spool.flush(lambda request: "queued")
    assert len(result.sent) == 1 and [path.name for path in result.bad] == [broken.name]
    assert spool.count() == 0 and spool.bad_count() == 1


def test_a_second_flusher_is_told_busy(tmp_path: Path) -> None:
    """Two flushes at once (worker thread + a producer) never send the same file twice."""
    spool = Spool(tmp_path / "spool")
    spool.put(job("a"))
    inner: list[bool] = []

    def submit(request: SpooledRequest) -> str:
        inner.append(spool.flush(lambda other: "queued").busy)
        return "queued"

    assert len(spool.flush(submit).sent) == 1
    assert inner == [True]


def test_spool_off_without_spool_dir() -> None:
    assert Spool.for_config(parse_config({})) is None
    config = parse_config({"queue": {"spool_dir": "/var/spool/oi", "spool_max_files": 5}})
    found = Spool.for_config(config)
    assert found is not None and (found.directory, found.max_files) == (Path("/var/spool/oi"), 5)


# -- Redis errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis.ConnectionError("refused"), "unavailable"),
        (redis.TimeoutError("slow"), "unavailable"),
        (redis.exceptions.OutOfMemoryError("OOM command not allowed"), "refused"),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), "refused"),
        (
            redis.ResponseError(
                "Command # 1 (LLEN ingest) of pipeline caused error: "
                "command not allowed when used memory > 'maxmemory'."
            ),
            "refused",
        ),
        (redis.exceptions.BusyLoadingError("loading"), "unavailable"),
        (redis.AuthenticationError("invalid username-password pair"), "config"),
        (redis.ResponseError("NOAUTH Authentication required."), "config"),
        (redis.exceptions.NoPermissionError("NOPERM"), "config"),
        (redis.ResponseError("WRONGTYPE"), None),
        (ValueError("x"), None),
    ],
)
def test_redis_errors_are_sorted(error: Exception, kind: str | None) -> None:
    """A wrong password is a configuration error, not "cannot reach Redis"."""
    assert redis_failure(error) == kind


def test_kombu_wrapped_errors_are_sorted_by_their_cause() -> None:
    try:
        try:
            raise redis.AuthenticationError("WRONGPASS invalid username-password pair")
        except redis.ConnectionError as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        assert redis_failure(wrapped) == "config"
    assert redis_failure(OperationalError("Error 111 connecting")) == "unavailable"


# -- Sentinel settings ------------------------------------------------------------------------


def test_sentinel_section_builds_celery_url_and_options() -> None:
    """queue.sentinel -> kombu's sentinel:// URL per sentinel plus master_name (Celery's docs)."""
    config = parse_config(
        {
            "queue": {
                "sentinel": {
                    "master_name": "oi",
                    "sentinels": ["10.0.0.1:26379", "10.0.0.2:26380"],
                    "password": "s3cret/pw",
                    "sentinel_password": "sp",
                    "db": 2,
                }
            }
        }
    )
    url, options = broker_settings(config.queue)
    assert url == "sentinel://:s3cret%2Fpw@10.0.0.1:26379/2;sentinel://:s3cret%2Fpw@10.0.0.2:26380/2"
    assert options["master_name"] == "oi"
    assert dict(**options["sentinel_kwargs"]) == {"password": "sp"}  # what kombu passes on
    assert "sp" not in repr(options) and "sp" not in json.dumps(options, cls=JSONEncoder)
    assert "s3cret" not in describe(config.queue)


def test_sentinel_url_in_broker_url() -> None:
    config = parse_config(
        {
            "queue": {
                "broker_url": "sentinel://:pw@h1:26379/1;sentinel://:pw@h2",
                "sentinel": {"master_name": "oi"},
            }
        }
    )
    spec = sentinel_spec(config.queue)
    assert spec is not None
    assert (spec.addresses, spec.db, spec.password) == ([("h1", 26379), ("h2", 26379)], 1, "pw")
    assert redact(config.queue.broker_url) == "sentinel://:***@h1:26379/1;sentinel://:***@h2"


def test_sentinel_url_without_master_name_is_a_config_error() -> None:
    config = parse_config({"queue": {"broker_url": "sentinel://h1:26379"}})
    with pytest.raises(ConfigError, match="master_name"):
        sentinel_spec(config.queue)


def test_celery_settings_use_the_sentinel_transport() -> None:
    from offline_ingestor.worker.settings import celery_settings

    config = parse_config({"queue": {"sentinel": {"master_name": "oi", "sentinels": ["h1:26379"]}}})
    settings = celery_settings(config)
    assert settings["broker_url"] == "sentinel://h1:26379/0"
    assert settings["broker_transport_options"]["master_name"] == "oi"
    assert settings["broker_transport_options"]["visibility_timeout"] == config.queue.visibility_timeout_s
