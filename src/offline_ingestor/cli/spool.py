"""``offline-ingestor spool list|flush``: requests waiting on local disk for Redis."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .common import config_option, echo_json, load

if TYPE_CHECKING:
    from ..config import Config
    from ..queue.spool import Spool

__all__ = ["spool", "spool_counts"]


def spool_counts(config: Config) -> dict[str, str | int | float | None] | None:
    """Waiting and unreadable request counts, or None when the spool is off."""
    from ..queue.spool import Spool

    found = Spool.for_config(config)
    if found is None:
        return None
    age = found.oldest_age_s()
    return {
        "dir": str(found.directory),
        "waiting": found.count(),
        "bad": found.bad_count(),
        "oldest_age_s": round(age, 1) if age is not None else None,
    }


def _spool_or_exit(config: Config) -> Spool:
    from ..queue.spool import Spool

    found = Spool.for_config(config)
    if found is None:
        click.echo("the spool is off (set queue.spool_dir)", err=True)
        sys.exit(1)
    return found


@click.group("spool")
def spool() -> None:
    """Enqueue requests that Redis could not take (queue.spool_dir)."""


@spool.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def list_(config_path: str | None, as_json: bool) -> None:
    """Show the waiting requests, oldest first."""
    config = load(config_path)
    found = _spool_or_exit(config)
    requests = []
    for path in found.paths():
        try:
            request = found.read(path)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        requests.append(
            {"key": request.job["key"], "file": request.job["file"], "spooled_at": request.spooled_at}
        )
    if as_json:
        echo_json({**(spool_counts(config) or {}), "requests": requests})
        return
    for entry in requests:
        click.echo(f"{entry['key']}  {entry['file']}")
    click.echo(f"{len(requests)} waiting in {found.directory}, {found.bad_count()} unreadable in bad/")


@spool.command("flush")
@config_option
def flush(config_path: str | None) -> None:
    """Enqueue every waiting request now; exit 75 if Redis still cannot take them."""
    from ..errors import QueueUnavailable
    from ..producer import producer_for

    config = load(config_path)
    found = _spool_or_exit(config)
    result = producer_for(config, spool=found).flush()
    for request, status in result.sent:
        click.echo(f"{status:<16} {request.job['key']}  {request.job['file']}")
    for path in result.bad:
        click.echo(f"unreadable       {path}", err=True)
    if result.busy:
        click.echo(f"another process is flushing {found.directory}; {result.left} waiting")
        return
    click.echo(f"{len(result.sent)} sent, {result.left} waiting")
    if result.stopped:
        raise QueueUnavailable(result.stopped)
