"""``offline-ingestor worker``: the Celery worker with our settings, started the same way as
``celery -A offline_ingestor.worker worker`` (both go through ``worker/setup.py``)."""

from __future__ import annotations

import sys

import click

from .common import config_long_option

__all__ = ["worker"]


def _concurrency_hint(ctx: click.Context, _: click.Parameter, value: str | None) -> str | None:
    """``-c`` is Celery's concurrency for ``worker``; a path there is a mistake worth a hint."""
    if value is not None and not value.isdigit():
        raise click.BadParameter(
            f"{value!r} is not a number. For `worker`, -c is Celery's --concurrency; "
            "give the config file with --config FILE (or $OFFLINE_INGESTOR_CONFIG)."
        )
    return value


@click.command("worker", context_settings={"ignore_unknown_options": True})
@config_long_option
@click.option(
    "--concurrency",
    "-c",
    callback=_concurrency_hint,
    default=None,
    help="Pool processes, as in `celery worker -c` (default: queue.concurrency).",
)
@click.option("--loglevel", "-l", default="INFO", help="Celery's log level.")
@click.option("--io", "io", is_flag=True, help="Serve queue.io_queue_name with a thread pool.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    config_path: str | None, concurrency: str | None, loglevel: str, io: bool, celery_args: tuple[str, ...]
) -> None:
    """Run the Celery worker with our settings (extra arguments go to `celery worker`)."""
    from ..config import load_config

    config = load_config(config_path)
    from ..worker.setup import json_mode, prepare_worker

    prepare_worker(config)  # logs, redaction, metrics folder: before Celery and its pool start
    from ..worker.app import app_for

    app = app_for(config)
    if io and not config.queue.io_queue_name:
        raise click.UsageError("--io needs queue.io_queue_name in the config")
    queue = config.queue.io_queue_name if io else config.queue.queue_name
    processes = concurrency or (config.queue.io_concurrency if io else config.queue.concurrency)
    argv = [
        # JSON logs: no banner (a worker.starting event says the same in one JSON line).
        *(["--quiet"] if json_mode(config) else []),
        "worker",
        "-Q",
        queue,
        "-c",
        str(processes),
        "--loglevel",
        loglevel,
        *(["-E"] if config.queue.task_events else []),  # see queue.task_events
        "--pool",
        "threads" if io else "prefork",
        *celery_args,
    ]
    # app.start, not app.worker_main: worker_main drops the worker's exit status, so a worker
    # that stopped on "Unrecoverable error" exited 0 and looked like a clean shutdown.
    code = app.start(argv=argv)
    sys.exit(code if isinstance(code, int) else 0)
