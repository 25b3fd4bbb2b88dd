"""A secret of the wrong type is never shown in a config error, in any output (issue 28, item 2).

A plain number is the case that matters: a list or mapping is hidden whatever its key, so
only a scalar exercises the secret-word rule, which must look at the key itself, not only
at its section (``scicat``, ``queue`` name no secret).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import cli

SECRET = "987654321"

#: (what the file holds, the key the error must name): every secret a config may hold.
CASES = {
    "scicat-password": (f"scicat:\n  password: {SECRET}\n", "scicat.password"),
    "scicat-token": (f"scicat:\n  token: {SECRET}\n", "scicat.token"),
    "broker-password": (
        f"queue:\n  sentinel:\n    master_name: oi-master\n    password: {SECRET}\n",
        "queue.sentinel.password",
    ),
    "sentinel-password": (
        f"queue:\n  sentinel:\n    master_name: oi-master\n    sentinel_password: {SECRET}\n",
        "queue.sentinel.sentinel_password",
    ),
    # Flower's basic auth is no key of ours (FLOWER_BASIC_AUTH goes to Flower itself); one put
    # in our file anyway is refused by name, its value not shown.
    "flower-auth": (f"queue:\n  flower_basic_auth: admin:{SECRET}\n", "queue.flower_basic_auth"),
}


def outputs(config: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each command that reads the config: producers (CLI, drop-in), the worker both ways, health."""
    # No password from the environment: it would replace the file's scicat.password.
    return {
        "enqueue": cli("offline-ingestor", "enqueue", "x.hdf", config=config, password=""),
        "drop-in": cli("scicat_background_ingestor", "-c", str(config), "--nexus-file", "x.hdf", password=""),
        "worker": cli("offline-ingestor", "worker", config=config, password=""),
        # The worker as `celery -A offline_ingestor.worker worker` loads the config on import.
        "celery worker": cli("celery", "-A", "offline_ingestor.worker", "worker", config=config, password=""),
        "health": cli("offline-ingestor", "health", "--json", config=config, password=""),
    }


@pytest.mark.parametrize("case", CASES)
def test_a_secrets_value_is_never_shown(tmp_path: Path, case: str) -> None:
    """Each command names the key (so the run failed on it, not on something else), never the value."""
    text, key = CASES[case]
    config = tmp_path / "c.yml"
    config.write_text(text)
    printed = {command: result.stdout + result.stderr for command, result in outputs(config).items()}
    leaks = {command: text for command, text in printed.items() if SECRET in text}
    assert not leaks, f"the secret was shown by {sorted(leaks)}: {leaks}"
    unnamed = {command: text for command, text in printed.items() if f"{key}: " not in text}
    assert not unnamed, f"these did not name {key}: {unnamed}"
