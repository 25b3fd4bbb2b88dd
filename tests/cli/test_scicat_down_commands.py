"""SciCat down under the commands (issue 29): ``ingest-now`` and the drop-in exit 75 with one line.

75 (EX_TEMPFAIL) tells the online ingestor to try again later, as for Redis; nothing is
written to SciCat, so the retry is a first run. The queued path (``queue.enabled``) hands the
file over whatever SciCat's state: tests/reliability/test_scicat_outage.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import cli, write_config, ymir_file
from offline_ingestor.testing import Fault


def stopped(standin: Any) -> None:
    standin.stop()


def answering_503(standin: Any) -> None:
    standin.inject(Fault(status=503, times=None))


COMMANDS: dict[str, Callable[[Path, Path], tuple[str, ...]]] = {
    "ingest-now": lambda config, path: ("offline-ingestor", "ingest-now", "-c", str(config), str(path)),
    "drop-in": lambda config, path: (
        "scicat_background_ingestor",
        "-c",
        str(config),
        "--nexus-file",
        str(path),
    ),
}


@pytest.mark.parametrize("outage", [stopped, answering_503], ids=["refused", "503"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_scicat_down_is_exit_75_with_one_line(
    command: str, outage: Callable[[Any], None], standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """SciCat refusing connections or answering 503: exit 75, one ``error:`` line, nothing written."""
    config = write_config(
        tmp_path / "c.yml", standin, data_root, scicat={"max_retries": 1, "backoff_s": 0.05}
    )
    path = ymir_file(data_root)
    outage(standin)
    result = cli(*COMMANDS[command](config, path))
    assert result.returncode == 75, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "SciCat" in errors[0], result.stderr[-2000:]
    assert not standin.datasets
