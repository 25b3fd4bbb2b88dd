"""What stock Celery tools show of a running worker: never a Redis or Sentinel password.

``celery inspect conf``/``stats``/``report`` are the remote-control replies Flower shows too
(its worker page's Config and Broker tabs, ``/api/workers``). The worker is real, on a
password-protected Redis, reached directly (URL from ``$OFFLINE_INGESTOR_BROKER_URL``) or
through a sentinel that has a password of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import BIN
from offline_ingestor.testing.processes import RedisServer, SentinelServer

pytestmark = [pytest.mark.redis, pytest.mark.worker]

REDIS_PW = "redis-pw-Zq81x"
SENTINEL_PW = "sentinel-pw-Kd27y"


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "secured-redis", password=REDIS_PW).start()
    yield server
    server.stop(kill=True)


def celery_tool(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``celery -A offline_ingestor.worker ARGS`` as an operator runs it, config from the environment."""
    return subprocess.run(
        [str(BIN / "celery"), "-A", "offline_ingestor.worker", *args],
        env={**os.environ, **(env or {}), "OFFLINE_INGESTOR_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_no_secret_in_remote_control(config: Path, env: dict[str, str] | None = None) -> None:
    for command in ("conf", "stats", "report"):
        # One destination: the reply ends the wait (without it inspect waits out the timeout).
        node = f"--destination=celery@{socket.gethostname()}"
        out = celery_tool(config, "inspect", command, node, "--timeout=20", "--json", env=env)
        text = out.stdout + out.stderr
        assert out.returncode == 0 and "celery@" in text, (command, text[-2000:])
        assert REDIS_PW not in text, f"inspect {command} shows the Redis password"
        assert SENTINEL_PW not in text, f"inspect {command} shows the sentinel password"


def test_inspect_shows_no_password_of_a_broker_url_from_the_environment(
    secured_redis: RedisServer, start_worker: Any, queue_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password comes from ``$OFFLINE_INGESTOR_BROKER_URL``; no reply carries it."""
    config = queue_config(queue={"broker_url": "redis://127.0.0.1:1/0"})  # replaced by the variable
    monkeypatch.setenv("OFFLINE_INGESTOR_BROKER_URL", secured_redis.url)
    start_worker(config)
    assert_no_secret_in_remote_control(config)


def test_inspect_shows_no_password_of_redis_behind_a_password_protected_sentinel(
    secured_redis: RedisServer, start_worker: Any, queue_config: Any, tmp_path: Path
) -> None:
    """Sentinel: the master's password in ``sentinel://`` URLs, the sentinel's in transport options."""
    sentinel = SentinelServer(
        tmp_path / "sentinel", secured_redis.port, quorum=1, auth_pass=REDIS_PW, password=SENTINEL_PW
    ).start()
    try:
        config = queue_config(
            queue={
                "broker_url": f"sentinel://{sentinel.address}",
                "sentinel": {
                    "master_name": "oi-master",
                    "password": REDIS_PW,
                    "sentinel_password": SENTINEL_PW,
                },
            }
        )
        start_worker(config)
        assert_no_secret_in_remote_control(config)
    finally:
        sentinel.stop(kill=True)
