"""``offline-ingestor audit``: is every file on disk in SciCat, once and whole?"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from .common import config_option, load

__all__ = ["audit"]


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--since", type=click.DateTime(), default=None, help="Only files modified since DATE.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file (and orphan), then no table.")
@click.option("--checksums", is_flag=True, help="Also compare checksums with the blocks (reads every file).")
@click.option("--enqueue-missing", is_flag=True, help="Enqueue missing and failed files (Redis).")
@click.option(
    "--repair", is_flag=True, help="PATCH totals-mismatch datasets; send no-files ones through the chain."
)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Resume file (JSON lines).")
@click.option(
    "--metrics-file", type=click.Path(dir_okay=False), default=None, help="Write Prometheus gauges here."
)
@click.option(
    "--previous",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="An earlier audit's --json output: skip files and datasets unchanged since.",
)
@click.option(
    "--map-legacy-pids",
    is_flag=True,
    help="One-time migration: keep the old pid of each legacy-pid file where reruns look.",
)
@click.option("--no-redis", is_flag=True, help="Do not read job records from Redis.")
@config_option
def audit(
    paths: tuple[str, ...],
    since: dt.datetime | None,
    as_json: bool,
    checksums: bool,
    enqueue_missing: bool,
    repair: bool,
    checkpoint: str | None,
    metrics_file: str | None,
    previous: str | None,
    map_legacy_pids: bool,
    no_redis: bool,
    config_path: str | None,
) -> None:
    """Compare the files under PATH... (default: the data roots) with SciCat and Redis.

    Dry by default: without --enqueue-missing, --repair or --map-legacy-pids nothing is written anywhere.
    Exit 0 when every file is ingested and there is no orphan, 1 otherwise.
    """
    from ..audit import AuditOptions, run_audit
    from ..audit.actions import enqueue_missing as do_enqueue
    from ..audit.actions import map_legacy_pids as do_map
    from ..audit.actions import repair as do_repair
    from ..audit.report import summary, write_metrics

    config = load(config_path)
    options = AuditOptions(
        paths=list(paths),
        since=since,
        checksums=checksums,
        checkpoint=Path(checkpoint) if checkpoint else None,
        progress=not as_json,
        previous=Path(previous) if previous else None,
        use_redis=not no_redis,
    )
    emit = (lambda item: click.echo(json.dumps(item.to_json()))) if as_json else None
    outcome = run_audit(config, options, emit=emit)
    if map_legacy_pids:  # first: a file enqueued before its pid is mapped would be catalogued again
        outcome.actions += do_map(config, outcome.problems)
    if enqueue_missing:
        outcome.actions += do_enqueue(config, outcome.problems)
    if repair:
        outcome.actions += do_repair(config, outcome.problems)
    if metrics_file:
        write_metrics(outcome, Path(metrics_file))
    if as_json:
        for action in outcome.actions:
            click.echo(json.dumps({"action": action}))
    else:
        click.echo(summary(outcome))
    sys.exit(0 if outcome.clean else 1)
