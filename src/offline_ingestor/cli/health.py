"""``health``: readiness for probes and people; ``--liveness`` reads the heartbeat file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import config_option, echo_json, load

__all__ = ["health"]


@click.command("health")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts and jq) instead of text.")
@click.option("--no-redis", is_flag=True, help="Skip the Redis check (ingest-now hosts).")
@click.option("--liveness", is_flag=True, help="Only check the worker's heartbeat file is fresh.")
@click.option("--max-age", default=60.0, show_default=True, help="Heartbeat age limit in seconds.")
def health(config_path: str | None, as_json: bool, no_redis: bool, liveness: bool, max_age: float) -> None:
    """Check config, schemas, Redis, SciCat and data roots; exit 0 only if all pass."""
    from ..health import heartbeat_age, run_checks

    config = load(config_path)
    if liveness:
        if not config.queue.heartbeat_file:
            raise click.UsageError("queue.heartbeat_file is not set in the config")
        age = heartbeat_age(Path(config.queue.heartbeat_file))
        alive = age is not None and age <= max_age
        click.echo(
            f"{'alive' if alive else 'DEAD'}: heartbeat "
            + (f"{age:.0f}s old" if age is not None else "missing")
        )
        sys.exit(0 if alive else 1)
    checks = run_checks(config, redis=not no_redis)
    if as_json:
        echo_json([check.__dict__ for check in checks])
    else:
        for check in checks:
            click.echo(
                f"{'ok  ' if check.ok else 'FAIL'} {check.name:<11} {check.detail}  ({check.duration_ms} ms)"
            )
    sys.exit(0 if all(check.ok for check in checks) else 1)
