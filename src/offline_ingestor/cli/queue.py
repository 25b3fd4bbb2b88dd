"""Queue commands: ``enqueue``, ``worker``, ``status``, ``failed``, ``requeue``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .common import config_option, echo_json, load

__all__ = ["enqueue", "failed", "requeue", "status", "worker"]


def _store(config: Any) -> Any:
    from ..producer import store_for

    return store_for(config)


def _guard_redis(call: Any) -> Any:
    """Run ``call``; a Redis that cannot be reached is one line and exit code 75."""
    import redis

    from ..errors import QueueUnavailable

    try:
        return call()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if isinstance(exc, redis.AuthenticationError):
            from ..errors import ConfigError

            raise ConfigError(f"Redis refused our login ({exc}): check queue.broker_url's password") from None
        raise QueueUnavailable(f"cannot reach Redis: {exc}") from None


@click.command("enqueue")
@click.argument("files", nargs=-1, type=click.Path())
@config_option
@click.option("--job-id", default=None, help="The file writer's job id (one FILE only).")
@click.option("--force", is_flag=True, help="Queue again even if queued, running or done.")
@click.option("--json", "as_json", is_flag=True)
def enqueue(
    files: tuple[str, ...], config_path: str | None, job_id: str | None, force: bool, as_json: bool
) -> None:
    """Queue FILE... for ingestion (paths are also read from stdin, one per line)."""
    from ..job import new_job
    from ..producer import Producer

    config = load(config_path)
    paths = list(files) or [line.strip() for line in sys.stdin if line.strip()]
    if job_id and len(paths) != 1:
        raise click.UsageError("--job-id needs exactly one FILE")
    producer = Producer(config)  # spools when Redis cannot take a file (queue.spool_dir)
    results = [producer.submit(new_job(path, config, job_id=job_id), force=force) for path in paths]
    if as_json:
        echo_json([result.__dict__ for result in results])
    else:
        for result in results:
            click.echo(f"{result.status:<16} {result.key}  {result.file}")


@click.command("worker", context_settings={"ignore_unknown_options": True})
@config_option
@click.option("--concurrency", type=int, default=None, help="Processes (default: queue.concurrency).")
@click.option("--loglevel", default="INFO")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    config_path: str | None, concurrency: int | None, loglevel: str, celery_args: tuple[str, ...]
) -> None:
    """Run the Celery worker with our settings (extra arguments go to Celery)."""
    config = load(config_path)
    os.environ["OFFLINE_INGESTOR_CONFIG"] = config.source_path
    from ..metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir()
    from .. import worker_signals  # noqa: F401  (liveness, metrics, log context)
    from ..worker import app_for

    app = app_for(config)
    argv = [
        "worker",
        "-Q",
        config.queue.queue_name,
        "-c",
        str(concurrency or config.queue.concurrency),
        "--loglevel",
        loglevel,
        *(["-E"] if config.queue.task_events else []),  # see queue.task_events
        "--pool",
        "prefork",
        *celery_args,
    ]
    # app.start, not app.worker_main: worker_main drops the worker's exit status, so a worker
    # that stopped on "Unrecoverable error" exited 0 and looked like a clean shutdown.
    code = app.start(argv=argv)
    sys.exit(code if isinstance(code, int) else 0)


def _age(record: dict[str, str]) -> str:
    return record.get("updated_at", "")


@click.command("status")
@click.argument("target", required=False)
@config_option
@click.option("--json", "as_json", is_flag=True)
def status(target: str | None, config_path: str | None, as_json: bool) -> None:
    """Show one file's or key's record, or counts per state when no TARGET is given."""
    config = load(config_path)
    store = _store(config)
    if not target:
        from ..errors import QueueUnavailable
        from .spool import spool_counts

        spooled = spool_counts(config)
        try:
            counts = _guard_redis(store.counts)
            failed_count = len(_guard_redis(store.failures))
        except QueueUnavailable:
            if spooled is not None:  # what is safe on local disk meanwhile
                click.echo(f"spooled    {spooled['waiting']}  ({spooled['dir']})", err=True)
            raise
        data: dict[str, Any] = {"states": counts, "failed_registry": failed_count}
        if spooled is not None:
            data["spool"] = spooled
        if as_json:
            echo_json(data)
        else:
            for state, count in sorted(counts.items()):
                click.echo(f"{state:<10} {count}")
            click.echo(f"{'failed registry':<10} {failed_count}")
            if spooled is not None:
                click.echo(f"{'spooled':<10} {spooled['waiting']}  ({spooled['dir']})")
        return
    key = target
    if os.path.exists(target) or "/" in target:
        key = _guard_redis(lambda: store.find_key(os.path.realpath(target))) or target
    record = _guard_redis(lambda: store.get(key))
    if record is None:
        click.echo(f"no record for {target}", err=True)
        sys.exit(1)
    if as_json:
        echo_json({"key": record.key, **record.fields})
        return
    for name, value in sorted(record.fields.items()):
        click.echo(f"{name:<24} {value}")


@click.command("failed")
@config_option
@click.option("--json", "as_json", is_flag=True)
def failed(config_path: str | None, as_json: bool) -> None:
    """List files in the failed registry with step, error and attempts."""
    config = load(config_path)
    entries = _guard_redis(_store(config).failures)
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("no failed files")
        return
    click.echo(f"{'KEY':<36} {'STEP':<18} {'ERROR':<20} {'TRIES':>5}  FILE / MESSAGE")
    for entry in entries:
        click.echo(
            f"{entry['key']:<36} {entry.get('step', ''):<18} {entry.get('error_class', ''):<20} "
            f"{entry.get('attempts', ''):>5}  {entry.get('file', '')}\n{'':<83}{entry.get('message', '')}"
        )


@click.command("requeue")
@click.argument("keys", nargs=-1)
@config_option
@click.option("--all", "requeue_all", is_flag=True, help="Requeue every file in the failed registry.")
def requeue(keys: tuple[str, ...], config_path: str | None, requeue_all: bool) -> None:
    """Queue failed files again (after fixing the cause); reports what it did."""
    from ..errors import IngestError
    from ..producer import submit_job

    config = load(config_path)
    store = _store(config)
    entries = {entry["key"]: entry for entry in _guard_redis(store.failures)}
    chosen = list(entries) if requeue_all else list(keys)
    if not chosen:
        raise click.UsageError("name KEY... or use --all")
    problems = 0
    for key in chosen:
        entry = entries.get(key)
        if entry is None:
            click.echo(f"not failed       {key}")
            problems += 1
            continue
        record = store.get(key)
        job = {
            "file": entry["file"],
            "key": key,
            "job_id": (record.fields.get("job_id") if record else None) or None,
            "message_file": None,
        }
        try:
            result = submit_job(job, config, force=True, store=store)
        except IngestError as exc:
            click.echo(f"error            {key}  {exc}")
            problems += 1
            continue
        click.echo(f"{result.status:<16} {key}  {result.file}")
    sys.exit(1 if problems else 0)
