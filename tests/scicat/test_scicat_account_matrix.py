"""SciCat account types x reruns and crashes: 0 duplicated, 0 half-written (RELIABILITY.md).

Every cell ingests one file against the stand-in with one account type and one failure, then
reruns it from scratch (no Redis record survives: each run is a fresh ``Runtime``), and counts
what SciCat holds. Each cell runs twice: with new processes (they look a dataset up before
creating it) and with warm ones that have seen this SciCat keep the pids it is sent (they
POST first and let the 409 be the look-up: ``scicat/write_order.py``).
``python tests/scicat/test_scicat_account_matrix.py`` prints the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import ymir_file
from offline_ingestor.errors import IngestError
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_FUNCTIONS
from offline_ingestor.testing import Account, Fault, ScicatStandin
from offline_ingestor.testing.scenario import make_config, seed

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)
HTML = b"<html><body>maintenance</body></html>"

#: account type -> (username, extra config); YMIR files: ownerGroup ess_proposal_876380,
#: accessGroups [ymir, ess_proposal_876380]. "other group" rows: the privileged-only account may
#: not read YMIR's proposal (SciCat's 403 in extract, as on the real backend); on a file of
#: proposal 999001 (:data:`OTHER_GROUP_PROPOSAL`) it reads the proposal, not the dataset.
ACCOUNT_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "admin (ADMIN_GROUPS)": ("ingestor", {}),
    "privileged, reads the file's group": ("privymir", {}),
    "privileged only, other group": ("privingest", {}),
    "privileged only, reads the proposal, not the dataset": ("privingest", {}),
    "privileged only, reads the proposal, not the dataset, API v4": (
        "privingest",
        {"scicat": {"api_version": "v4"}},
    ),
    "privileged, reads the file's group, API v4": ("privymir", {"scicat": {"api_version": "v4"}}),
    "with-pid group, own group": ("ownymir", {}),
    "plain create group, no pid": (
        "user1",
        {"dataset": {"allow_dataset_pid": False}, "ingestion": {"check_if_dataset_exists_by_metadata": True}},
    ),
}
#: The rows whose file belongs to proposal 999001 (accessGroups owngroup, privgroup, group1).
OTHER_GROUP_PROPOSAL = "999001"

ACCOUNTS = [
    Account("ingestor", "ingestorpw", roles=["ingestor"], global_access=True),
    Account("privingest", "privingestpw", roles=["privgroup"]),
    Account("privymir", "privymirpw", roles=["privgroup", "ymir"]),
    Account("ownymir", "ownymirpw", roles=["owngroup", "ess_proposal_876380"]),
    Account("user1", "user1pw", roles=["group1", "ess_proposal_876380"]),
]


def _crash_after_dataset(rt: Runtime, job: dict[str, Any]) -> None:
    """The process dies right after the dataset POST: its job record is gone."""
    for step in ("select-schema", "extract", "build-dataset", "post-dataset"):
        job = STEP_FUNCTIONS[step](rt, job)


SCENARIOS: dict[str, tuple[list[Fault], Callable[[Runtime, dict[str, Any]], Any] | None]] = {
    "rerun twice, records lost": ([], None),
    "process dies after the dataset POST": ([], _crash_after_dataset),
    "dataset stored, answer lost": (
        [Fault(method="POST", path_regex=r"/datasets$", reset_connection=True, after_handling=True)],
        None,
    ),
    "dataset stored, answer is HTML": (
        [Fault(method="POST", path_regex=r"/datasets$", status=200, raw_body=HTML, after_handling=True)],
        None,
    ),
    "block stored, answer lost": (
        [Fault(method="POST", path_regex=r"/origdatablocks$", reset_connection=True, after_handling=True)],
        None,
    ),
    "SciCat dies between block and totals": (
        [Fault(method="POST", path_regex=r"/origdatablocks$", crash_before_totals=True)],
        None,
    ),
}


@dataclass
class Cell:
    account: str
    scenario: str
    datasets: int
    blocks: int
    duplicated: int
    half_written: int
    outcomes: list[str]

    @property
    def silent(self) -> int:
        """Half-written and the last run did not say so (exit 0)."""
        return self.half_written if not self.outcomes[-1].startswith("refused") else 0


def _standin() -> ScicatStandin:
    standin = ScicatStandin(
        ACCOUNTS,
        admin_groups=["ingestor"],
        create_dataset_groups=["group1"],
        with_pid_groups=["owngroup"],
        privileged_groups=["privgroup"],
    )
    seed(standin).start()
    return standin


def runtime(config: Any, *, warm: bool) -> Runtime:
    """A new process's runtime; ``warm``: one that has already seen SciCat keep a pid."""
    rt = Runtime.from_config(config)
    if warm:
        rt.dataset_order.note_created(sent_pid="20.500.12269/seen", stored_pid="20.500.12269/seen")
    return rt


def measure(account: str, scenario: str, data_root: Path, *, warm: bool = False) -> Cell:
    user, sections = ACCOUNT_TYPES[account]
    faults, first = SCENARIOS[scenario]
    standin = _standin()
    try:
        rest = {key: value for key, value in sections.items() if key != "scicat"}
        scicat = {"username": user, "password": f"{user}pw", **sections.get("scicat", {})}
        config = make_config(standin.url_v3, data_root, scicat=scicat, **rest)
        proposal = OTHER_GROUP_PROPOSAL if "reads the proposal, not" in account else "876380"
        path = ymir_file(data_root, proposal=proposal)
        for fault in faults:
            standin.inject(fault)
        outcomes = []
        for attempt in range(3):
            rt = runtime(config, warm=warm)  # a new process: no record of earlier runs
            job = new_job(path, config.ingestion.allowed_data_roots)
            try:
                if attempt == 0 and first is not None:
                    first(rt, job)
                    outcomes.append("died")
                    continue
                done = ingest(rt, job, policy=NO_WAIT, sleep=lambda _: None)
                outcomes.append(
                    "wrote" if done.get("dataset_created") or done.get("origdatablock_created") else "found"
                )
            except IngestError as exc:
                outcomes.append(f"refused ({type(exc).__name__}{', hint' if exc.hint else ''})")
        datasets = standin.datasets
        blocks = standin.origdatablocks
        half = 0
        for pid, doc in datasets.items():
            own = [b for b in blocks if b["datasetId"] == pid]
            size = sum(b["size"] for b in own)
            files = sum(len(b["dataFileList"]) for b in own)
            half += int(not own or doc["size"] != size or doc["numberOfFiles"] != files)
        duplicated = int(len(datasets) > 1 or len(blocks) > 1)
        return Cell(account, scenario, len(datasets), len(blocks), duplicated, half, outcomes)
    finally:
        standin.stop()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


@pytest.mark.parametrize("process", ["new", "warm"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("account", list(ACCOUNT_TYPES))
def test_no_duplicate_no_half_written(account: str, scenario: str, process: str, root: Path) -> None:
    """Every account type x failure x write order: never a duplicate; never a silent half-written file."""
    cell = measure(account, scenario, root, warm=process == "warm")
    assert cell.duplicated == 0 and cell.silent == 0, cell
    assert cell.datasets <= 1 and cell.blocks <= 1, cell
    if cell.half_written:
        assert "hint" in cell.outcomes[-1], cell


def main() -> None:
    """Print the RELIABILITY.md table."""
    import tempfile

    print(
        "| account type | failure, then 2 reruns | datasets | blocks | duplicated "
        "| half-written (silent) | half-written, reported | runs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for account in ACCOUNT_TYPES:
        for scenario in SCENARIOS:
            with tempfile.TemporaryDirectory() as tmp:
                cell = measure(account, scenario, Path(tmp) / "data")
            runs = ", ".join(cell.outcomes)
            print(
                f"| {account} | {scenario} | {cell.datasets} | {cell.blocks} | {cell.duplicated} "
                f"| {cell.silent} | {cell.half_written - cell.silent} | {runs} |"
            )


if __name__ == "__main__":
    main()
