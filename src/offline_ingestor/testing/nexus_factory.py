"""Write synthetic ESS-style NeXus files with h5py, for tests and benchmarks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ESS_USERS", "write_ess_file", "write_nexus"]

ESS_USERS = ("Anders Pettersson", "Fredrik Bolmsten", "Søren Schmidt")


def write_nexus(
    path: Path, datasets: Mapping[str, Any], attrs: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """Create ``path`` with one dataset per key (``/a/b/c`` → groups ``a``, ``b``).

    Strings are stored as variable-length UTF-8 unless given as ``bytes`` (fixed length).
    ``attrs`` maps a dataset path to its attributes (e.g. ``{"units": "K"}``).
    """
    import h5py
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            if isinstance(value, bytes):
                handle.create_dataset(name, data=np.bytes_(value))
            elif isinstance(value, str):
                handle.create_dataset(name, data=value, dtype=h5py.string_dtype("utf-8"))
            else:
                handle.create_dataset(name, data=value)
        for name, values in (attrs or {}).items():
            for key, attr in values.items():
                handle[name].attrs[key] = attr
    return path


def write_ess_file(
    path: Path,
    *,
    proposal: str = "443503",
    title: str = "synthetic run",
    instrument: str = "ODIN",
    run_number: int = 1,
    job_id: str | None = None,
    users: tuple[str, ...] = ESS_USERS,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A file shaped like the ESS file writer's (the fields the shipped schemas read)."""
    datasets: dict[str, Any] = {
        "/entry/entry_identifier_uuid": job_id or str(uuid.uuid4()),
        "/entry/experiment_identifier": proposal,
        "/entry/title": title,
        "/entry/instrument/name": instrument,
        "/entry/start_time": "2024-10-28T09:06:41.186Z",
        "/entry/end_time": "2024-10-28T09:18:14.376Z",
        "/entry/entry_identifier": str(run_number),
        "/entry/sample/name": "A Sample",
    }
    for user in users:
        datasets[f"/entry/user_{user.replace(' ', '')}/name"] = user
    datasets.update(extra or {})
    return write_nexus(path, datasets)
