"""``sample_attachment``: find the sample's pid in SciCat from the name in the file."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from ..errors import NexusReadError
from ..files.nexus import read_path
from .models import SampleAttachment
from .variables import Lookup

__all__ = ["SampleSearch", "derived_sample_id", "find_samples", "sample_ids"]

#: Namespace of the ids of samples we create (``create_missing``): stable for a name and proposal.
SAMPLE_NAMESPACE = uuid.UUID("a3f1e0b4-5c7d-4e2a-9b18-6d0c2e7f4a51")


@dataclass(frozen=True)
class SampleSearch:
    """What the file names (None when it names no sample) and what SciCat holds under that name."""

    name: Any
    proposal: Any
    ids: list[str]


def derived_sample_id(proposal: Any, name: Any) -> str:
    """The id a sample created for ``name`` in ``proposal`` gets: the same in every worker and rerun."""
    return str(uuid.uuid5(SAMPLE_NAMESPACE, f"{proposal}\0{name}"))


def find_samples(
    options: SampleAttachment, handle: Any, lookup: Lookup, samples_endpoint: str
) -> SampleSearch:
    """The file's sample name and proposal, and the ids of SciCat's samples of that description."""
    if not options.query_sample_name:
        return SampleSearch(None, None, [])
    try:
        name = read_path(handle, options.sample_name_path)[0].value
        proposal = read_path(handle, options.proposal_id_path)[0].value
    except NexusReadError:
        return SampleSearch(None, None, [])  # upstream: no sample name in the file, no sample
    where = {"where": {"description": name, "proposalId": proposal}}
    found = lookup(f"{samples_endpoint}?filter={quote_plus(json.dumps(where))}")
    if not isinstance(found, list):
        return SampleSearch(name, proposal, [])
    ids = sorted({str(item["sampleId"]) for item in found if isinstance(item, dict) and item.get("sampleId")})
    return SampleSearch(name, proposal, ids)


def sample_ids(options: SampleAttachment, handle: Any, lookup: Lookup, samples_endpoint: str) -> list[str]:
    """Sample ids whose description is the file's sample name, in the file's proposal."""
    return find_samples(options, handle, lookup, samples_endpoint).ids
