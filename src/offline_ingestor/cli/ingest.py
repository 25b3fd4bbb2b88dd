"""``ingest-now`` (the whole chain, synchronously) and ``demo`` (it, on bundled data)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import config_option, echo_json, load

if TYPE_CHECKING:
    from ..config import Config
    from ..ingest.job import Job
    from ..ingest.runtime import Runtime

__all__ = ["demo", "ingest_now", "run_ingest_now"]


@contextlib.contextmanager
def _progress_bar(path: Path) -> Iterator[Any]:
    """A hashing progress bar on a terminal (log lines print above it); else ``None``."""
    if not sys.stderr.isatty() or not path.is_file():
        yield None
        return
    from ..logs import progress_bar

    bar = click.progressbar(length=path.stat().st_size, label=f"hashing {path.name}", file=sys.stderr)
    with bar, progress_bar(bar):
        yield bar


def command_runtime(config: Config) -> Runtime:
    """A command's runtime; beside workers (``queue.enabled``) it also finds the pids they kept.

    A worker keeps a pid SciCat rewrote in Redis only (queue/pid_memo.py): without reading it,
    a rerun here would create a second dataset or retry for ever.
    """
    from ..ingest import pipeline

    if not config.queue.enabled:
        return pipeline.command_runtime(config)
    from ..queue.connection import redis_client
    from ..queue.pid_memo import CommandPidMemo

    return pipeline.command_runtime(config, pid_memo=CommandPidMemo(redis_client(config.queue), config))


def run_ingest_now(
    config: Config,
    file: str,
    *,
    job_id: str | None = None,
    message_file: str | None = None,
    rt: Runtime | None = None,
) -> Job:
    """``ingest-now``'s work with its terminal output: schema warnings and a progress bar."""
    from ..ingest.pipeline import ingest_path

    rt = rt or command_runtime(config)
    for problem in rt.schema_problems():
        click.echo(f"warning: schema not loaded: {problem}", err=True)
    with _progress_bar(Path(os.path.realpath(file))) as bar:
        progress = bar.update if bar is not None else None
        return ingest_path(rt, file, job_id=job_id, message_file=message_file, progress=progress)


def summary(job: Job) -> dict[str, Any]:
    keys = (
        "file",
        "key",
        "job_id",
        "schema_id",
        "pid",
        "dataset_created",
        "origdatablock_id",
        "origdatablock_created",
        "scicat_job_id",
        "scicat_job_created",
    )
    return {key: job.get(key) for key in keys if key in job}


def dry_run_payloads(rt: Runtime, job: Job) -> dict[str, Any]:
    """What a run would POST: dataset, origdatablock, and the job and samples when the schema has them."""
    from ..ingest.jobs import job_payload
    from ..ingest.samples import sample_payloads

    pid = job["dataset"].get("pid")
    payloads: dict[str, Any] = {
        "dataset": job["dataset"],
        "origdatablock": {"datasetId": pid, **job["origdatablock"]},
    }
    if samples := sample_payloads(rt, job):
        payloads["samples"] = samples
    # A pid SciCat makes (none sent) is unknown before the POST: the job names it so.
    job_body = job_payload(rt, job, str(pid or "<pid SciCat gives the dataset>"))
    if job_body is not None:
        payloads["job"] = job_body
    return payloads


@click.command("ingest-now")
@click.argument("file", type=click.Path())
@config_option
@click.option("--dry-run", is_flag=True, help="Print the payloads (dataset, block, job); write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the pid.")
@click.option("--job-id", default=None, help="The file writer's job id (idempotency key).")
def ingest_now(file: str, config_path: str | None, dry_run: bool, as_json: bool, job_id: str | None) -> None:
    """Ingest FILE now, in this process, without the queue; print the dataset pid."""
    from ..files.nexus_child import start_reader

    # The file's metadata is read in a child process (nexus_reading.isolate: auto): its h5py
    # import overlaps the config, schema and client set-up below (issue 26).
    start_reader()
    config = load(config_path, dry_run=dry_run)
    rt = command_runtime(config)
    job = run_ingest_now(config, file, job_id=job_id, rt=rt)
    if config.ingestion.dry_run:
        echo_json(dry_run_payloads(rt, job))
    elif as_json:
        echo_json(summary(job))
    else:
        click.echo(job["pid"])


@click.command("demo")
@click.option("--keep-running", is_flag=True, help="Leave the SciCat stand-in up until Ctrl-C.")
def demo(keep_running: bool) -> None:
    """Ingest the bundled example files into a local SciCat stand-in, twice (idempotent)."""
    from ..demo import run_demo

    run_demo(keep_running=keep_running)
