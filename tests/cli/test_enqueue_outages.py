"""Producers when Redis cannot take a file: spool, all-or-nothing claims, login errors, health.

Real redis-server processes of the test's own; no worker (the chain's first message is
counted in Redis). The cases with a worker are in tests/reliability/test_redis_outages.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from helpers import cli, write_config, ymir_file
from offline_ingestor.errors import ConfigError, QueueUnavailable
from offline_ingestor.ingest.job import new_job
from offline_ingestor.producer import Producer, enqueue, producer_for
from offline_ingestor.queue.spool import Spool
from offline_ingestor.testing import scenario
from offline_ingestor.testing.processes import RedisServer

pytestmark = pytest.mark.redis

NO_SCICAT = "http://127.0.0.1:9/api/v3"


def queued_messages(url: str) -> int:
    client = redis.Redis.from_url(url)
    return sum(int(client.llen(name)) for name in client.scan_iter("ingest*") if client.type(name) == b"list")


def records(url: str) -> dict[str, dict[str, str]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return {name: client.hgetall(name) for name in client.scan_iter("oi:job:*")}


def docs(url: str) -> list[str]:
    return list(redis.Redis.from_url(url, decode_responses=True).scan_iter("oi:doc:*"))


def config_for(data_root: Path, url: str, **queue: Any) -> Any:
    return scenario.make_config(NO_SCICAT, data_root, queue={"broker_url": url, **queue})


def test_redis_down_spools_and_the_next_call_sends_everything(
    redis_server: RedisServer, data_root: Path, tmp_path: Path
) -> None:
    """Redis down: enqueue returns "spooled"; back up: the next enqueue sends the spool first."""
    # Given a spool and Redis stopped
    config = config_for(data_root, redis_server.url, spool_dir=str(tmp_path / "spool"))
    redis_server.stop()
    files = [ymir_file(data_root, name=f"run-{index}.hdf") for index in range(5)]
    # When files are enqueued while it is down
    results = [enqueue(path, config=config) for path in files[:4]]
    # Then each is spooled, durably, one file per request
    assert [result.status for result in results] == ["spooled"] * 4
    assert Spool(tmp_path / "spool").count() == 4
    # When Redis is back and one more file is enqueued
    redis_server.start()
    assert enqueue(files[4], config=config).queued
    # Then every file has its chain's first message and the spool is empty
    assert Spool(tmp_path / "spool").count() == 0
    assert queued_messages(redis_server.url) == 5
    assert {record["state"] for record in records(redis_server.url).values()} == {"queued"}
    # And enqueueing a spooled file again is the usual no-op
    assert enqueue(files[0], config=config).status == "already queued"


def test_cli_enqueue_batch_spools_once_redis_is_found_down(
    redis_server: RedisServer, data_root: Path, tmp_path: Path
) -> None:
    """enqueue with Redis down and a spool: exit 0, one "spooled" line per file; spool flush sends them."""
    standin = SimpleNamespace(url_v3=NO_SCICAT)
    config = write_config(
        tmp_path / "c.yml", standin, data_root, queue={"broker_url": redis_server.url, "spool_dir": "spool"}
    )
    files = [str(ymir_file(data_root, name=f"run-{index}.hdf")) for index in range(3)]
    redis_server.stop()
    result = cli("offline-ingestor", "enqueue", "-c", str(config), *files)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["spooled"] * 3
    status = cli("offline-ingestor", "spool", "list", "--json", "-c", str(config))
    assert json.loads(status.stdout)["waiting"] == 3
    down = cli("offline-ingestor", "status", "-c", str(config))
    assert down.returncode == 75 and "spooled    3" in down.stderr
    # Redis still down: flush says so with exit 75 and keeps the requests
    still_down = cli("offline-ingestor", "spool", "flush", "-c", str(config))
    assert still_down.returncode == 75 and "3 waiting" in still_down.stdout
    redis_server.start()
    flushed = cli("offline-ingestor", "spool", "flush", "-c", str(config))
    assert flushed.returncode == 0, flushed.stderr
    assert "3 sent, 0 waiting" in flushed.stdout
    assert queued_messages(redis_server.url) == 3
    shown = json.loads(cli("offline-ingestor", "status", "--json", "-c", str(config)).stdout)
    assert shown["spool"]["waiting"] == 0 and shown["states"] == {"queued": 3}


def test_redis_killed_between_claim_and_publish_leaves_a_retryable_claim(
    redis_server: RedisServer, data_root: Path, tmp_path: Path
) -> None:
    """Redis dies after the claim, before the chain is published (the roll-back fails too).

    The spooled request re-takes its own claim when Redis is back; before, the file answered
    "already queued" with no message anywhere until the 7-day TTL.
    """
    from offline_ingestor.producer import start_chain

    config = config_for(data_root, redis_server.url, spool_dir=str(tmp_path / "spool"))
    job = new_job(ymir_file(data_root), config.ingestion.allowed_data_roots)

    def publish_after_redis_died(job: Any) -> None:
        redis_server.stop()  # SIGTERM: AOF (appendfsync always) has the claim
        start_chain(job, config)

    producer = Producer(config, publish=publish_after_redis_died)
    assert producer.submit(job).status == "spooled"
    redis_server.start()
    assert records(redis_server.url)[f"oi:job:{job['key']}"]["state"] == "queued"  # the orphan claim
    assert queued_messages(redis_server.url) == 0
    # When the spool is flushed (by any producer, the worker or the CLI)
    result = producer_for(config).flush()
    # Then the request is published once; a second flush of the same request is a no-op
    assert [status for _, status in result.sent] == ["queued"]
    assert queued_messages(redis_server.url) == 1
    assert producer_for(config).submit(job).status == "already queued"
    assert queued_messages(redis_server.url) == 1


def test_redis_full_at_publish_rolls_the_claim_back(
    redis_server: RedisServer, data_root: Path, tmp_path: Path
) -> None:
    """OOM (noeviction) while publishing: no record, no document is left; the request is spooled."""
    from offline_ingestor.producer import start_chain

    config = config_for(data_root, redis_server.url, spool_dir=str(tmp_path / "spool"))
    job = new_job(ymir_file(data_root), config.ingestion.allowed_data_roots)
    admin = redis.Redis.from_url(redis_server.url)

    def publish_into_a_full_redis(job: Any) -> None:
        admin.config_set("maxmemory", 1)
        start_chain(job, config)

    assert Producer(config, publish=publish_into_a_full_redis).submit(job).status == "spooled"
    assert records(redis_server.url) == {} and docs(redis_server.url) == []
    admin.config_set("maxmemory", 0)
    assert producer_for(config).flush().sent[0][1] == "queued"
    assert queued_messages(redis_server.url) == 1


def test_redis_full_at_enqueue_without_spool_is_transient_and_leaves_nothing(
    redis_server: RedisServer, data_root: Path
) -> None:
    """OOM at the claim: QueueUnavailable (exit 75), nothing written; later the file queues normally.

    Before: a ResponseError traceback (exit 1), or a claim without a message ("already queued").
    """
    config = config_for(data_root, redis_server.url)
    path = ymir_file(data_root)
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory", 1)
    with pytest.raises(QueueUnavailable, match="cannot take writes now"):
        enqueue(path, config=config)
    assert records(redis_server.url) == {}
    admin.config_set("maxmemory", 0)
    assert enqueue(path, config=config).queued
    assert queued_messages(redis_server.url) == 1


def test_read_only_replica_spools(redis_server: RedisServer, data_root: Path, tmp_path: Path) -> None:
    """A broker URL that points at a replica (after a failover without Sentinel): spooled."""
    replica = RedisServer(
        tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(redis_server.port)]
    )
    replica.start()
    try:
        config = config_for(data_root, replica.url, spool_dir=str(tmp_path / "spool"))
        result = enqueue(ymir_file(data_root), config=config)
        assert result.status == "spooled"
    finally:
        replica.stop(kill=True)


class TestPasswords:
    PASSWORD = "pw-Zq81x"

    @pytest.fixture
    def locked(self, tmp_path: Path) -> Any:
        server = RedisServer(tmp_path / "locked", password=self.PASSWORD).start()
        client = redis.Redis.from_url(server.url)
        client.execute_command("ACL", "SETUSER", "ingestor", "on", f">{self.PASSWORD}u", "~*", "&*", "+@all")
        yield server
        server.stop(kill=True)

    def test_wrong_password_is_a_configuration_error(
        self, locked: RedisServer, data_root: Path, tmp_path: Path
    ) -> None:
        """A wrong password: exit 1 "refused our login", not "cannot reach Redis" / 75; never printed."""
        wrong = f"redis://:not-{self.PASSWORD}@127.0.0.1:{locked.port}/0"
        standin = SimpleNamespace(url_v3=NO_SCICAT)
        config = write_config(
            tmp_path / "c.yml", standin, data_root, queue={"broker_url": wrong, "spool_dir": "spool"}
        )
        result = cli("offline-ingestor", "enqueue", "-c", str(config), str(ymir_file(data_root)))
        assert result.returncode == 1, result
        said = result.stdout + result.stderr
        assert "refused our login" in said and "cannot reach" not in said
        assert self.PASSWORD not in result.stderr + result.stdout
        assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").glob("*.json"))
        with pytest.raises(ConfigError):
            enqueue(ymir_file(data_root, name="b.hdf"), config=config_for(data_root, wrong))
        health = cli("offline-ingestor", "health", "--json", "-c", str(config))
        check = next(item for item in json.loads(health.stdout) if item["name"] == "redis")
        assert not check["ok"] and "configuration error" in check["detail"]
        assert self.PASSWORD not in health.stdout

    def test_acl_user_in_the_url_works(self, locked: RedisServer, data_root: Path) -> None:
        url = f"redis://ingestor:{self.PASSWORD}u@127.0.0.1:{locked.port}/0"
        assert enqueue(ymir_file(data_root), config=config_for(data_root, url)).queued
        assert queued_messages(url) == 1


def test_health_fails_on_a_redis_without_persistence(data_root: Path, tmp_path: Path) -> None:
    """No AOF and no RDB: a restart loses every queued file, so health fails and says why."""
    server = RedisServer(tmp_path / "volatile", appendonly=False).start()
    try:
        standin = SimpleNamespace(url_v3=NO_SCICAT)
        config = write_config(tmp_path / "c.yml", standin, data_root, queue={"broker_url": server.url})
        health = cli("offline-ingestor", "health", "--json", "-c", str(config))
        check = next(item for item in json.loads(health.stdout) if item["name"] == "redis")
        assert not check["ok"] and "no persistence" in check["detail"]
        redis.Redis.from_url(server.url).config_set("appendonly", "yes")
        health = cli("offline-ingestor", "health", "--json", "-c", str(config))
        check = next(item for item in json.loads(health.stdout) if item["name"] == "redis")
        assert check["ok"] and "persistence AOF" in check["detail"], check
    finally:
        server.stop(kill=True)
