"""The ``offline-ingestor`` command: parses arguments and calls the package, nothing more.

Subcommands import what they need when they run, so ``--help`` stays fast.
"""

from __future__ import annotations

import click

from .audit import audit
from .common import main_entry
from .flower import flower
from .health import health
from .ingest import demo, ingest_now
from .queue import enqueue, failed, requeue, status
from .schemas import schemas
from .spool import spool
from .worker import worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="offline-ingestor")
def cli() -> None:
    """Ingest NeXus files into SciCat, exactly once, from a Celery worker fed through Redis."""


for command in (ingest_now, demo, enqueue, worker, status, failed, requeue, schemas, health, spool):
    cli.add_command(command)
cli.add_command(audit)
cli.add_command(flower)


def main() -> None:
    """Console-script entry point."""
    main_entry(cli)
