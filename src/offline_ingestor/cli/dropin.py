"""The drop-in's click command (the slow path; ``background_ingestor.py`` is the entry point).

The message file may be upstream's JSON array or an object (``files/done_writing.py``); upstream's
one-flag-per-config-key options are accepted too (``dropin/upstream_args.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["background_ingestor"]


@click.command(
    context_settings={
        "help_option_names": ["-h", "--help"],
        # Upstream's --section.key flags (dropin/upstream_args.py) arrive in ctx.args.
        "ignore_unknown_options": True,
        "allow_extra_args": True,
    }
)
@click.pass_context
@click.option("-c", "--config-file", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--nexus-file", required=True, type=click.Path())
@click.option("--done-writing-message-file", default=None, type=click.Path())
@click.option("--id", "run_id", default=None, help="Accepted for compatibility; unused.")
@click.option("-d", "--ingestion.dry-run", "dry_run", is_flag=True, help="Write nothing.")
def background_ingestor(
    ctx: click.Context,
    config_path: str,
    nexus_file: str,
    done_writing_message_file: str | None,
    run_id: str | None,
    dry_run: bool,
) -> None:
    """Ingest one NeXus file (or enqueue it when the config enables the queue)."""
    from ..config_paths import config_source
    from .common import load

    try:
        text = Path(config_source(config_path)).read_bytes()  # what a fast path may reuse
    except OSError:
        text = b""
    config = load(config_path, dry_run=dry_run)
    if ctx.args:
        config = _upstream_flags(config, ctx.args)
    if config.queue.enabled and not config.ingestion.dry_run:
        from ..ingest.job import new_job
        from ..producer import submit_job

        job = new_job(nexus_file, config.ingestion.allowed_data_roots, message_file=done_writing_message_file)
        # Redis down, full or failing over: the request waits in queue.spool_dir (exit 0), as
        # the online ingestor never retries a drop-in that failed.
        result = submit_job(job, config)
        note = f" (Redis cannot take it now; kept in {config.queue.spool_dir})" if result.spooled else ""
        click.echo(f"{result.status}: {result.key}{note}")
        if text and not ctx.args:
            from ..dropin.fast import remember_config

            # Accepted in full, and the queue took the file: the next calls may hand requests
            # to the local worker through the spool (dropin/fast.py).
            remember_config(config_path, config, text)
        return
    if config.ingestion.nexus_reading.isolate != "never":
        from ..files.nexus_child import start_reader

        start_reader()  # h5py loads in the reader child while the pipeline below is set up
    from .ingest import run_ingest_now

    job = run_ingest_now(config, nexus_file, message_file=done_writing_message_file)
    click.echo(job.get("pid") or "dry run: nothing written")


def _upstream_flags(config: Config, args: list[str]) -> Config:
    """Upstream's ``--section.key`` flags applied (or ignored with a warning)."""
    import structlog

    from ..dropin.upstream_args import apply_overrides, parse_upstream_args
    from ..logs import configure_logging

    upstream = parse_upstream_args(args)
    if upstream.overrides:
        config = apply_overrides(config, upstream.overrides)
        configure_logging(config.logging.format, config.logging.logging_level)
    log = structlog.get_logger("offline_ingestor.background_ingestor")
    for flag in upstream.ignored:
        log.warning("upstream_flag.ignored", flag=flag)
    return config
