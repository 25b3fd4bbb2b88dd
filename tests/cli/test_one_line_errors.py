"""A configuration mistake costs one ``error: …`` line from every command, never a traceback.

A mistyped broker URL (``redsi://``) used to surface deep in kombu or redis-py; Celery's own
command without ``$OFFLINE_INGESTOR_CONFIG`` used to ask Celery's default broker and say
"no nodes replied". No Redis is needed: each command must stop before it reaches one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import BIN

BAD_URL = "redsi://:url-pw-Hx3@127.0.0.1:6379/0"


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OFFLINE_INGESTOR_")}
    return {**env, **extra}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line the command printed (stderr), after checking it printed nothing else."""
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, "\n".join(lines[-30:])
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


COMMANDS = {
    "enqueue": ["offline-ingestor", "enqueue", "{file}"],
    "status": ["offline-ingestor", "status"],
    "failed": ["offline-ingestor", "failed"],
    "worker": ["offline-ingestor", "worker"],
    "drop-in": ["scicat_background_ingestor", "-c", "{config}", "--nexus-file", "{file}"],
    "celery worker": ["celery", "-A", "offline_ingestor.worker", "worker", "--pool", "solo"],
    "celery status": ["celery", "-A", "offline_ingestor.worker", "status"],
}


@pytest.mark.parametrize("from_env", [False, True], ids=["in-file", "from-env"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_mistyped_broker_url_is_one_config_line(command: str, from_env: bool, tmp_path: Path) -> None:
    """``redsi://`` in the file or in ``$OFFLINE_INGESTOR_BROKER_URL``: one line naming the key."""
    config = tmp_path / "c.yml"
    url = "redis://127.0.0.1:6379/0" if from_env else BAD_URL
    config.write_text(f"queue:\n  enabled: true\n  broker_url: '{url}'\n")
    data = tmp_path / "run.hdf"
    data.write_bytes(b"x")
    env = clean_env(OFFLINE_INGESTOR_CONFIG=str(config), OFFLINE_INGESTOR_SCICAT_PASSWORD="pw")
    if from_env:
        env["OFFLINE_INGESTOR_BROKER_URL"] = BAD_URL
    args = [part.format(file=data, config=config) for part in COMMANDS[command]]
    line = one_error_line(run(args, env, tmp_path))
    assert line.startswith("error: config") and "queue.broker_url" in line and "'redsi://'" in line
    assert "url-pw-Hx3" not in line
    assert ("$OFFLINE_INGESTOR_BROKER_URL" in line) == from_env


@pytest.mark.parametrize("command", [["status"], ["inspect", "ping"], ["worker", "--pool", "solo"]])
def test_celery_command_without_config_refuses_in_one_line(command: list[str], tmp_path: Path) -> None:
    """No ``$OFFLINE_INGESTOR_CONFIG``: refuse, naming it, instead of asking a default broker."""
    result = run(["celery", "-A", "offline_ingestor.worker", *command], clean_env(), tmp_path)
    line = one_error_line(result)
    assert "OFFLINE_INGESTOR_CONFIG" in line
