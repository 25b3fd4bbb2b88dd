"""``sample_attachment``: find the sample's pid in SciCat from the name in the file."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from ..errors import NexusReadError
from ..files.nexus import read_path
from .models import SampleAttachment
from .variables import Lookup

__all__ = ["sample_ids"]


def sample_ids(options: SampleAttachment, handle: Any, lookup: Lookup, samples_endpoint: str) -> list[str]:
    """Sample ids whose description is the file's sample name, in the file's proposal."""
    if not options.query_sample_name:
        return []
    try:
        name = read_path(handle, options.sample_name_path)[0].value
        proposal = read_path(handle, options.proposal_id_path)[0].value
    except NexusReadError:
        return []  # upstream: no sample name in the file means no sample to attach
    where = {"where": {"description": name, "proposalId": proposal}}
    found = lookup(f"{samples_endpoint}?filter={quote_plus(json.dumps(where))}")
    if not isinstance(found, list):
        return []
    return sorted(
        {str(item["sampleId"]) for item in found if isinstance(item, dict) and item.get("sampleId")}
    )
