"""A SciCat without ``GET auth/whoami`` (older deployments): files are ingested, one warning.

The stand-in answers 404 to whoami, as a SciCat without that route does. The account's
groups are then unknown: the ingestor takes nothing as readable that it has not read (GET
before every write) and says so once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import cli, write_config, ymir_file
from offline_ingestor.testing import Fault


def test_no_whoami_degrades_with_one_warning(standin: Any, data_root: Path, tmp_path: Path) -> None:
    standin.inject(Fault(method="GET", path_regex=r"/auth/whoami$", status=404, times=None))
    config = write_config(tmp_path / "c.yml", standin, data_root, logging={"format": "json"})
    first, second = ymir_file(data_root, name="a.hdf"), ymir_file(data_root, name="b.hdf")
    for path in (first, second):
        result = cli("offline-ingestor", "ingest-now", str(path), config=config)
        assert result.returncode == 0, result.stderr[-2000:]
    assert len(standin.datasets) == 2 and len(standin.origdatablocks) == 2
    # Again: nothing new (the look-ups found both).
    assert cli("offline-ingestor", "ingest-now", str(first), config=config).returncode == 0
    assert len(standin.datasets) == 2 and len(standin.origdatablocks) == 2
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    loud = [event for event in events if event.get("level") in ("warning", "error", "critical")]
    assert [event["event"] for event in loud] == ["scicat.no_whoami"], loud
