"""``offline-ingestor demo``: the whole job on bundled files against a local SciCat stand-in.

Shows a first run creating one dataset + origdatablock per file and a second run creating
nothing, without any external service.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from .config import parse_config
from .examples import EXAMPLES_DIR

__all__ = ["DEMO_INSTRUMENTS", "DEMO_PROPOSALS", "demo_config", "demo_layout", "run_demo"]

#: What the stand-in answers for the proposals and instruments the example files name.
DEMO_PROPOSALS = (
    {"proposalId": "443503", "pi_firstname": "Ada", "pi_lastname": "Lovelace", "pi_email": "ada@ess.example"},
    {
        "proposalId": "876380",
        "pi_firstname": "Lise",
        "pi_lastname": "Meitner",
        "pi_email": "lise@ess.example",
    },
)
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
DEMO_INSTRUMENTS = ({"id": "ess-ymir-0001", "name": "YMIR"}, {"id": "ess-odin-0001", "name": "ODIN"})


def demo_layout(root: Path) -> list[Path]:
    """Copy the example files into an ESS-like tree (``ess/raw/<instr>/<year>/<proposal>/``)."""
    targets = [
        root / "ess/raw/coda/2024/443503/small-coda.hdf",
        root / "ess/raw/ymir/2024/876380/small-ymir.hdf",
    ]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLES_DIR / target.name, target)
    return targets


def demo_config(scicat_url: str, data_root: Path, **overrides: Any) -> Any:
    """A config for the stand-in: shipped schemas, hashes in a sibling folder."""
    schemas = EXAMPLES_DIR / "schemas"
    data: dict[str, Any] = {
        "dataset": {"default_owner_group": "ingestor", "default_access_groups": ["ingestor"]},
        "ingestion": {
            "schemas_directory": str(schemas),
            "fallback_schema_file_path": str(schemas / "fallback/ess-fallback.imsc.yml"),
            "allowed_data_roots": [str(data_root)],
            "check_if_dataset_exists_by_metadata": False,
            "file_handling": {"ingestor_files_directory": str(data_root / "ingestor")},
        },
        "scicat": {
            "host": scicat_url,
            "username": "ingestor",
            "password": "ingestorpw",
            "verify": False,
            "timeout": 10,
        },
        "logging": {"logging_level": "WARNING"},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return parse_config(data)


def run_demo(keep_running: bool = False) -> None:
    """Start the stand-in, ingest both files twice, print what SciCat holds."""
    from .job import new_job
    from .logs import configure_logging
    from .pipeline import ingest
    from .runtime import Runtime
    from .testing import ScicatStandin

    configure_logging("console", "WARNING")
    with ScicatStandin(admin_groups=["admin", "ingestor"]) as standin, tempfile.TemporaryDirectory() as tmp:
        for proposal in DEMO_PROPOSALS:
            standin.add_proposal(proposal)
        for instrument in DEMO_INSTRUMENTS:
            standin.add_instrument(instrument)
        root = Path(tmp)
        files = demo_layout(root)
        rt = Runtime.from_config(demo_config(standin.url_v3, root))
        click.echo(f"SciCat stand-in at {standin.base_url}; data under {root}\n")
        for attempt in ("first run", "second run (must create nothing)"):
            click.echo(f"== {attempt}")
            for path in files:
                job = ingest(rt, new_job(path, rt.config))
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
