"""Secrets stay secret (logs, errors, messages, Redis records); YAML is loaded safely; TLS is verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ingestor_cli, wait_for
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, failures, make_files, redis_of, tally

pytestmark = [pytest.mark.redis, pytest.mark.worker]

PASSWORD = "ingestorpw"  # what the worker fixture puts in OFFLINE_INGESTOR_SCICAT_PASSWORD


def redis_dump(config: Path) -> str:
    """Every key of the broker/job store and its value, whatever its type (SCAN + TYPE)."""
    client = redis_of(config)
    parts = []
    for name in client.scan_iter("*", count=1000):
        kind = client.type(name)
        if kind == "string":
            value: Any = client.get(name)
        elif kind == "hash":
            value = client.hgetall(name)
        elif kind == "list":
            value = client.lrange(name, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(name))
        elif kind == "zset":
            value = client.zrange(name, 0, -1, withscores=True)
        else:
            value = kind
        parts.append(f"{name} {json.dumps(value, default=str)}")
    return "\n".join(parts)


def test_secrets_never_leave_the_process(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """Password, configured and issued tokens are absent from logs, registry, messages and oi: keys."""
    # Given a config with a token (and a password in the environment), and a SciCat that rejects one file
    static_token = standin.login_token("ingestor")
    config = fast_config(scicat={"token": static_token}, logging={"logging_level": "DEBUG", "format": "json"})
    files = make_files(data_root, 3)
    rejected = make_files(data_root, 1, prefix="rejected")
    # When files sit on the queue before any worker runs, the messages hold no secret
    enqueue_all(config, files)
    queued = redis_dump(config)
    assert "select_schema" in queued or "offline_ingestor" in queued
    # When a worker ingests them, SciCat expires the session (relogin with the password) and a file fails
    worker = start_worker(config)
    wait_for(lambda: tally(standin, files).lost == 0, what="the files")
    standin.expire_tokens()
    standin.inject(
        Fault(
            method="POST", path_regex=r"/datasets$", status=400, body={"message": ["bad"], "statusCode": 400}
        )
    )
    enqueue_all(config, rejected)
    wait_for(lambda: bool(failures(config)), what="the rejected file")
    issued = list(standin._store._tokens)  # every token the stand-in handed out
    # Then no secret appears anywhere we write
    places = {
        "queued messages": queued,
        "redis after the run": redis_dump(config),
        "failed registry": json.dumps(failures(config)),
        "worker log": worker.log.read_text(errors="replace"),
        "status": ingestor_cli("status", "-c", str(config), "--json").stdout,
    }
    secrets = [PASSWORD, static_token, *issued, "eyJhbGciOi"]
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:6]}… found in {place}"
    assert any(path.endswith("/auth/login") for _, path, _ in standin.requests)  # the password was used
    figures(files=4, lost=0, duplicated=0)


def test_yaml_tags_are_refused(tmp_path: Path) -> None:
    """A ``!!python/object`` tag in a config or schema file is an error; nothing is executed."""
    from offline_ingestor.config import load_config
    from offline_ingestor.errors import ConfigError, SchemaError
    from offline_ingestor.schema.loader import load_schema_file

    marker = tmp_path / "pwned"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    config = tmp_path / "config.yml"
    config.write_text(f"scicat:\n  host: {payload}\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(config)
    schema = tmp_path / "evil.imsc.yml"
    schema.write_text(f"id: evil\nname: {payload}\nselector: '*'\n")
    with pytest.raises(SchemaError, match="invalid YAML"):
        load_schema_file(schema)
    assert not marker.exists()


def test_tls_verification_is_on_by_default() -> None:
    """scicat.verify defaults to True and the HTTP session verifies certificates."""
    from offline_ingestor.config import parse_config
    from offline_ingestor.scicat import ScicatClient

    config = parse_config(yaml.safe_load("scicat:\n  host: https://scicat.example/api/v3\n"))
    assert config.scicat.verify is True
    verify = ScicatClient(config.scicat).session.verify
    # True, or a CA bundle path (REQUESTS_CA_BUNDLE): both verify; False would not
    assert verify is True or (isinstance(verify, str) and Path(verify).exists()), verify
