"""Drop-in for the ESS ``scicat_background_ingestor`` that the online ingestor spawns.

``scicat_background_ingestor -c CONFIG --nexus-file FILE [--done-writing-message-file M]``
exits 0 when the file is ingested (or was already), non-zero with a one-line reason
otherwise. With ``queue.enabled: true`` in the config it enqueues the file instead and exits
0 once the file is safely in Redis, so today's online ingestor feeds the queue unchanged.

The message file may be upstream's JSON array or an object (``done_writing.py``); upstream's
one-flag-per-config-key options are accepted too (``upstream_args.py``).
"""

from __future__ import annotations

import click

from .cli.common import main_entry

__all__ = ["main"]


@click.command(
    context_settings={
        "help_option_names": ["-h", "--help"],
        # Upstream's --section.key flags (upstream_args.py) arrive in ctx.args.
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
    import structlog

    from .cli.common import load
    from .logs import configure_logging
    from .upstream_args import apply_overrides, parse_upstream_args

    config = load(config_path, dry_run=dry_run)
    upstream = parse_upstream_args(ctx.args)
    if upstream.overrides:
        config = apply_overrides(config, upstream.overrides)
        configure_logging(config.logging.format, config.logging.logging_level)
    for flag in upstream.ignored:
        structlog.get_logger(__name__).warning("upstream_flag.ignored", flag=flag)
    if config.queue.enabled and not config.ingestion.dry_run:
        from .producer import enqueue

        # Redis down, full or failing over: the request waits in queue.spool_dir (exit 0), as
        # the online ingestor never retries a drop-in that failed.
        result = enqueue(nexus_file, config=config, message_file=done_writing_message_file)
        note = f" (Redis cannot take it now; kept in {config.queue.spool_dir})" if result.spooled else ""
        click.echo(f"{result.status}: {result.key}{note}")
        return
    from .cli.ingest import run_ingest_now

    job = run_ingest_now(config, nexus_file, message_file=done_writing_message_file)
    click.echo(job.get("pid") or "dry run: nothing written")


def main() -> None:
    """Console-script entry point."""
    main_entry(background_ingestor)
