"""``schemas check`` and ``schemas explain``: tools for schema authors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import config_option, echo_json, load

if TYPE_CHECKING:
    from ..schema.models import Schema

__all__ = ["schemas"]


@click.group("schemas")
def schemas() -> None:
    """Validate schema files and show what they make of a data file."""


@schemas.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@config_option
def check(directory: str | None, config_path: str | None) -> None:
    """Validate every *.imsc.yml in DIRECTORY (default: the config's schemas_directory)."""
    from ..schema import load_schemas

    target = Path(directory) if directory else load(config_path).schemas_dir
    loaded = load_schemas(target)
    if not loaded.schemas and not loaded.broken:
        # "0 valid, 0 invalid" read like a pass over the wrong folder.
        click.echo(f"error: no *.imsc.yml found in {target}", err=True)
        sys.exit(1)
    for schema in loaded.schemas:
        click.echo(f"ok     {schema.source_file}  id={schema.id} order={schema.order}")
    for broken in loaded.broken:
        click.echo(f"ERROR  {broken.message}")
    click.echo(f"{len(loaded.schemas)} valid, {len(loaded.broken)} invalid")
    sys.exit(1 if loaded.broken or not loaded.schemas else 0)


def _source(schema: Schema, name: str) -> str:
    from ..schema.variables import BUILTIN_NAMES

    if name in BUILTIN_NAMES:
        return "built-in"
    variable = schema.variables[name]
    if variable.source == "NXS":
        return f"NXS {variable.path}"
    if variable.source == "SC":
        return f"SC GET {variable.url}" + (f" [{variable.field}]" if variable.field else "")
    template = variable.value if isinstance(variable.value, str) else repr(variable.value)
    return f"VALUE {template}" + (f" | {variable.operator}" if variable.operator else "")


@schemas.command("explain")
@click.argument("file", type=click.Path())
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def explain(file: str, config_path: str | None, as_json: bool) -> None:
    """Show the schema FILE matches, every variable's value and source, and the dataset."""
    from ..ingest.job import new_job
    from ..ingest.jobs import job_payload
    from ..ingest.runtime import Runtime
    from ..ingest.samples import sample_payloads
    from ..ingest.steps import build_dataset, extract, select_schema

    config = load(config_path, dry_run=True)
    rt = Runtime.from_config(config)
    job = select_schema(rt, new_job(file, config.ingestion.allowed_data_roots))
    schema = rt.schemas.by_id(job["schema_id"])
    job = build_dataset(rt, extract(rt, job))
    variables = [
        {"name": name, "value": item["value"], "unit": item["unit"], "source": _source(schema, name)}
        for name, item in job["variables"].items()
    ]
    # post-dataset creates the new samples (create_missing), post-job the job (scicat_job).
    pid = str(job["dataset"].get("pid") or "<pid SciCat gives the dataset>")
    samples = {"attached": job.get("sample_ids", []), "to_create": sample_payloads(rt, job)}
    scicat_job = job_payload(rt, job, pid)
    if as_json:
        echo_json(
            {
                "schema": {"id": schema.id, "name": schema.name, "file": schema.source_file},
                "variables": variables,
                "dataset": job["dataset"],
                "origdatablock": job["origdatablock"],
                "samples": samples,
                "job": scicat_job,
            }
        )
        return
    click.echo(f"schema:   {schema.id} ({schema.name})\n          {schema.source_file}\n")
    click.echo("variables:")
    width = max(len(item["name"]) for item in variables)
    for item in variables:
        unit = f" [{item['unit']}]" if item["unit"] else ""
        click.echo(
            f"  {item['name']:<{width}}  {item['value']!r:.100}{unit}\n  {'':<{width}}  <- {item['source']}"
        )
    click.echo("\ndataset:")
    echo_json(job["dataset"])
    click.echo("\norigdatablock:")
    echo_json(job["origdatablock"])
    if schema.sample_attachment is not None:
        click.echo("\nsamples (attached; to create when SciCat lacks them):")
        echo_json(samples)
    click.echo("\njob (post-job):" + ("" if scicat_job else " none: the schema has no scicat_job section"))
    if scicat_job:
        echo_json(scicat_job)
