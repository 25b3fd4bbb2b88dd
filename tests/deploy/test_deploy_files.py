"""The Dockerfile and the compose file are valid and keep the settings we rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it is in the [test] extra: scripts/setup installs it)")
    return found


def test_compose_file_matches_the_compose_spec() -> None:
    """docker-compose.yml validates against the Compose Specification schema."""
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    """The Dockerfile has no hadolint finding at any level."""
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_redis_persists_and_never_evicts() -> None:
    """Redis runs with AOF and maxmemory-policy noeviction (evicted keys lose messages)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_image_runs_as_non_root() -> None:
    """The final stage switches to a numeric non-root user before the entry point."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and not users[-1].startswith(("0", "root"))


def test_compose_worker_config_exists_and_loads() -> None:
    """The config the compose file mounts into the worker exists and validates.

    Its secret file exists only in the container: test_compose_stack.py reads it there."""
    from offline_ingestor.config import parse_config

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = [volume.split(":") for volume in compose["services"]["worker"]["volumes"]]
    (source,) = [host for host, target, *_ in mounts if target == "/etc/offline-ingestor/config.yml"]
    data = yaml.safe_load((ROOT / source).read_text())
    data["scicat"].pop("password_file")
    config = parse_config(data, "/etc/offline-ingestor/config.yml")
    assert config.queue.enabled
