"""Drop-in for the ESS ``scicat_background_ingestor`` that the online ingestor spawns.

``scicat_background_ingestor -c CONFIG --nexus-file FILE [--done-writing-message-file M]``
exits 0 when the file is ingested (or was already), non-zero with a one-line reason
otherwise. With ``queue.enabled: true`` in the config it enqueues the file instead and exits
0 once the file is safely in Redis, so today's online ingestor feeds the queue unchanged.
"""

from __future__ import annotations

import click

from .cli.common import main_entry

__all__ = ["main"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config-file", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--nexus-file", required=True, type=click.Path())
@click.option("--done-writing-message-file", default=None, type=click.Path())
@click.option("--id", "run_id", default=None, help="Accepted for compatibility; unused.")
@click.option("-d", "--ingestion.dry-run", "dry_run", is_flag=True, help="Write nothing.")
def background_ingestor(
    config_path: str,
    nexus_file: str,
    done_writing_message_file: str | None,
    run_id: str | None,
    dry_run: bool,
) -> None:
    """Ingest one NeXus file (or enqueue it when the config enables the queue)."""
    from .cli.common import load

    config = load(config_path)
    dry_run = dry_run or config.ingestion.dry_run
    if config.queue.enabled and not dry_run:
        from .producer import enqueue

        # Redis down, full or failing over: the request waits in queue.spool_dir (exit 0), as
        # the online ingestor never retries a drop-in that failed.
        result = enqueue(nexus_file, config=config, message_file=done_writing_message_file)
        note = f" (Redis cannot take it now; kept in {config.queue.spool_dir})" if result.spooled else ""
        click.echo(f"{result.status}: {result.key}{note}")
        return
    from .cli.ingest import run_ingest_now

    job = run_ingest_now(config, nexus_file, dry_run=dry_run, message_file=done_writing_message_file)
    click.echo(job.get("pid") or "dry run: nothing written")


def main() -> None:
    """Console-script entry point."""
    main_entry(background_ingestor)
