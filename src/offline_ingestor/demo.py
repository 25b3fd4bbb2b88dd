"""``offline-ingestor demo``: the whole job on bundled files against a local SciCat stand-in.

Shows a first run creating one dataset + origdatablock per file and a second run creating
nothing, without any external service.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

__all__ = ["run_demo"]

#: The stored fields the demo prints for each dataset.
DEMO_FIELDS = (
    "pid",
    "datasetName",
    "principalInvestigators",
    "contactEmail",
    "sourceFolder",
    "creationLocation",
    "ownerGroup",
    "size",
    "numberOfFiles",
)


def run_demo(keep_running: bool = False) -> None:
    """Start the stand-in, ingest both files twice, print what SciCat holds."""
    from .ingest.job import new_job
    from .ingest.pipeline import ingest
    from .ingest.runtime import Runtime
    from .logs import configure_logging
    from .testing.scenario import example_tree, make_config, seeded_standin

    configure_logging("console", "WARNING")
    with seeded_standin() as standin, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = example_tree(root)
        rt = Runtime.from_config(make_config(standin.url_v3, root, logging={"logging_level": "WARNING"}))
        click.echo(f"SciCat stand-in at {standin.base_url}; data under {root}\n")
        for attempt in ("first run", "second run (must create nothing)"):
            click.echo(f"== {attempt}")
            for path in files:
                job = ingest(rt, new_job(path, rt.config.ingestion.allowed_data_roots))
                made = "created" if job.get("dataset_created") else "already there"
                click.echo(f"  {path.name:<16} schema={job['schema_id']:<32} pid={job['pid']}  ({made})")
        click.echo(
            f"\nSciCat holds {len(standin.datasets)} datasets, {len(standin.origdatablocks)} origdatablocks:"
        )
        for stored in standin.datasets.values():
            shown = {key: stored.get(key) for key in DEMO_FIELDS}
            shown["scientificMetadata"] = sorted(stored.get("scientificMetadata", {}))
            click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
        if keep_running:
            click.echo(f"\nStand-in still up at {standin.base_url} (Ctrl-C to stop)")
            import time

            while True:
                time.sleep(3600)
