"""Queue commands: ``enqueue``, ``status``, ``failed``, ``requeue``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .common import config_option, echo_json, load

if TYPE_CHECKING:
    from ..config import Config
    from ..ingest.job import Job
    from ..queue.job_store import JobStore
    from ..queue.scicat_breaker import Outage
    from ..queue.submission import Producer

T = TypeVar("T")

__all__ = ["enqueue", "failed", "requeue", "status"]


def _store(config: Config) -> JobStore:
    from ..queue.job_store import JobStore

    return JobStore.for_config(config)


def _scicat_outage(store: JobStore) -> Outage | None:
    """The workers' open SciCat breaker (``queue/scicat_breaker.py``), or None while SciCat is up."""
    from ..queue.scicat_breaker import ScicatBreaker

    return _guard_redis(ScicatBreaker(store.redis).outage)


def _guard_redis(call: Callable[[], T]) -> T:
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


JSON_HELP = "Print JSON (for scripts and jq) instead of text."


def _read_paths(files: tuple[str, ...]) -> list[str]:
    """FILE arguments, else one path per stdin line (a hint first when stdin is a terminal)."""
    if files:
        return list(files)
    if sys.stdin.isatty():
        click.echo("reading paths from stdin, one per line (Ctrl-D to end; see --help)", err=True)
    # Bytes, decoded as the OS does (surrogate escapes): a non-UTF-8 name is then refused by
    # new_job in one line instead of a UnicodeDecodeError traceback here.
    return [os.fsdecode(line.strip()) for line in sys.stdin.buffer if line.strip()]


def _enqueue_one(
    path: str, config: Config, producer: Producer, job_id: str | None, force: bool
) -> dict[str, str]:
    """Queue one path; a refusal is a result (``refused``, with why), not an exception, so
    that every line of a pipe is tried and reported."""
    from ..errors import IngestError, InputFileError, is_transient
    from ..ingest.job import new_job, printable_path

    try:
        job = new_job(path, config.ingestion.allowed_data_roots, job_id=job_id)
    except InputFileError as exc:
        reason = str(exc).removeprefix("refused: ")
        return {"status": "refused", "key": "", "file": printable_path(path), "reason": reason}
    try:
        result = producer.submit(job, force=force)
    except IngestError as exc:
        if is_transient(exc):  # Redis is gone: the next lines would fail the same way
            raise
        return {"status": "refused", "key": "", "file": printable_path(path), "reason": str(exc)}
    return {"status": result.status, "key": result.key, "file": result.file, "reason": ""}


@click.command("enqueue")
@click.argument("files", nargs=-1, type=click.Path())
@config_option
@click.option("--job-id", default=None, help="The file writer's job id (one FILE only).")
@click.option("--force", is_flag=True, help="Queue again even if queued, running or done.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def enqueue(
    files: tuple[str, ...], config_path: str | None, job_id: str | None, force: bool, as_json: bool
) -> None:
    """Queue FILE... for ingestion (paths are also read from stdin, one per line).

    Every path is reported: queued, already <state>, spooled (Redis cannot take it now and
    queue.spool_dir is set), or refused with the reason (missing, outside the data roots); the
    exit status is 1 if any was refused, 75 if Redis is down and there is no spool.
    """
    config = load(config_path)
    paths = _read_paths(files)
    if job_id and len(paths) != 1:
        raise click.UsageError("--job-id needs exactly one FILE")
    from ..producer import producer_for

    producer = producer_for(config)  # spools when Redis cannot take a file (queue.spool_dir)
    results = []
    for path in paths:
        result = _enqueue_one(path, config, producer, job_id, force)
        results.append(result)
        if not as_json:
            why = f"  ({result['reason']})" if result["reason"] else ""
            click.echo(f"{result['status']:<16} {result['key'] or '-'}  {result['file']}{why}")
    if as_json:
        echo_json(results)
    elif len(results) > 1:
        click.echo(f"enqueue: {_tally(results)}", err=True)  # stderr: stdout stays one line per path
    sys.exit(1 if any(result["status"] == "refused" for result in results) else 0)


def _tally(results: list[dict[str, str]]) -> str:
    """``5 paths: 3 queued, 1 already, 1 refused`` (every ``already <state>`` counts as already)."""
    counts: dict[str, int] = {"queued": 0, "already": 0, "spooled": 0, "refused": 0}
    for result in results:
        status = result["status"].split()[0]
        counts[status] = counts.get(status, 0) + 1
    shown = ", ".join(f"{count} {status}" for status, count in counts.items() if count or status != "spooled")
    return f"{len(results)} paths: {shown}"


#: Record fields shown under the names used in logs and docs (Redis keeps the old names).
_RENAMED = {"job_id": "writer_job_id", "pid": "dataset_pid"}
_INTEGERS = ("attempts",)


def public_fields(fields: dict[str, str]) -> dict[str, Any]:
    """A job record for people and scripts: unambiguous names, numbers as numbers."""
    shown: dict[str, Any] = {}
    for name, value in fields.items():
        shown[_RENAMED.get(name, name)] = int(value) if name in _INTEGERS and value.isdigit() else value
    return shown


def public_failure(entry: dict[str, Any]) -> dict[str, Any]:
    """A failed-registry entry with ``transient`` a bool (entries of older releases hold "true"/"false")."""
    if isinstance(entry.get("transient"), str):
        return {**entry, "transient": entry["transient"] == "true"}
    return entry


@click.command("status")
@click.argument("target", required=False)
@config_option
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
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
        from ..queue.stuck import stuck_files

        stuck = _guard_redis(lambda: stuck_files(store, config.queue.stuck_after_s))
        data: dict[str, Any] = {"states": counts, "failed_registry": failed_count, "stuck": stuck}
        if spooled is not None:
            data["spool"] = spooled
        outage = _scicat_outage(store)
        if outage is not None:
            data["scicat_outage"] = {**outage.__dict__, "text": outage.describe()}
        if as_json:
            echo_json(data)
        else:
            for state, count in sorted(counts.items()):
                click.echo(f"{state:<10} {count}")
            click.echo(f"{'failed registry':<10} {failed_count}")
            if outage is not None:
                click.echo(f"{'scicat':<10} {outage.describe()}")
            if spooled is not None:
                click.echo(f"{'spooled':<10} {spooled['waiting']}  ({spooled['dir']})")
            for item in stuck:
                click.echo(
                    f"stuck      {item['key']}  {item['state']} {item['step']} for {item['age_s']:.0f} s, "
                    f"resumed {item['resumes']}x: {item['why']}  {item['file']}"
                )
        return
    key = target
    if os.path.exists(target) or "/" in target:
        key = _guard_redis(lambda: store.find_key(os.path.realpath(target))) or target
    record = _guard_redis(lambda: store.get(key))
    if record is None:
        click.echo(f"no record for {target}", err=True)
        sys.exit(1)
    fields = public_fields(record.fields)
    if as_json:
        echo_json({"key": record.key, **fields})
        return
    for name, value in sorted(fields.items()):
        click.echo(f"{name:<24} {value}")


@click.command("failed")
@config_option
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def failed(config_path: str | None, as_json: bool) -> None:
    """List files in the failed registry with step, error and attempts."""
    config = load(config_path)
    entries = [public_failure(entry) for entry in _guard_redis(_store(config).failures)]
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
    """Queue failed files again (after fixing the cause); reports what it did.

    A queued or running KEY whose worker died (its heartbeat is gone) is taken over too.
    """
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
        record = store.get(key)
        if entry is None and record is not None and record.state in ("queued", "running"):
            # A stuck file (its worker died): the forced claim takes over the lease only if
            # the holder's heartbeat is gone, else answers "already running (held by ...)".
            entry = {"file": record.fields.get("file", "")}
        if entry is None:
            click.echo(f"not failed       {key}")
            problems += 1
            continue
        job: Job = {
            "file": entry["file"],
            "key": key,
            "job_id": (record.fields.get("job_id") if record else None) or None,
            "message_file": None,
        }
        if entry.get("step") == "post-job":
            job["keep_done_steps"] = True  # its dataset is whole: retry only the job
        try:
            result = submit_job(job, config, force=True, store=store)
        except IngestError as exc:
            click.echo(f"error            {key}  {exc}")
            problems += 1
            continue
        click.echo(f"{result.status:<16} {key}  {result.file}")
    sys.exit(1 if problems else 0)
