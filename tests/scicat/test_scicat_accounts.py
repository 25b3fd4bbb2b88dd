"""Exactly once for every SciCat account type, and against a SciCat that answers oddly.

Each run builds a fresh ``Runtime`` and keeps no record between runs: exactly the situation
of a rerun after every Redis record is lost (``ingest-now``, the drop-in, ``enqueue --force``).
SciCat is the stand-in over HTTP, configured with the backend's ``*_GROUPS`` account types.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import ymir_file
from offline_ingestor.errors import (
    CannotVerify,
    IdempotencyConflict,
    IngestError,
    ScicatAuthError,
    ScicatRejected,
    ScicatUnavailable,
)
from offline_ingestor.health import run_checks
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_FUNCTIONS
from offline_ingestor.scicat.totals import check_totals, repair_totals
from offline_ingestor.testing import Account, Fault, ScicatStandin
from offline_ingestor.testing.scenario import seed

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)
HTML = b"<html><body><h1>SciCat is down for maintenance</h1></body></html>"
#: YMIR datasets get ownerGroup ess_proposal_876380 and accessGroups [ymir, ess_proposal_876380].
ACCOUNTS = (
    Account("ingestor", "ingestorpw", roles=["ingestor"], global_access=True),  # ADMIN_GROUPS
    Account("privingest", "privingestpw", roles=["privgroup"]),  # privileged only
    Account("privymir", "privymirpw", roles=["privgroup", "ymir"]),  # privileged, reads ymir
    Account("owningest", "owningestpw", roles=["owngroup"]),  # with pid, own group only
    Account("ownymir", "ownymirpw", roles=["owngroup", "ess_proposal_876380"]),
    Account("user1", "user1pw", roles=["group1", "ess_proposal_876380"]),  # plain create group
)


@pytest.fixture
def scicat() -> Iterator[ScicatStandin]:
    with ScicatStandin(
        list(ACCOUNTS),
        admin_groups=["ingestor"],
        create_dataset_groups=["group1"],
        with_pid_groups=["owngroup"],
        privileged_groups=["privgroup"],
    ) as server:
        yield seed(server)


def config_for(make_config: Any, standin: Any, user: str = "ingestor", **sections: Any) -> Any:
    scicat = {"username": user, "password": f"{user}pw", **sections.pop("scicat", {})}
    return make_config(standin, scicat=scicat, **sections)


def other_group_file(data_root: Path, name: str = "run-0001.hdf", **kwargs: Any) -> Path:
    """A YMIR file of proposal 999001: the create groups may read the proposal (its
    accessGroups), not the dataset (ownerGroup ess_proposal_999001, accessGroups ymir and that).
    (On YMIR's own proposal such an account gets SciCat's 403 on the proposal read, before writing.)"""
    return ymir_file(data_root, name, proposal="999001", **kwargs)


def run(config: Any, path: Path) -> dict[str, Any]:
    """One run with no memory of earlier runs (all Redis records lost)."""
    rt = Runtime.from_config(config)
    return ingest(
        rt, new_job(path, config.ingestion.allowed_data_roots), policy=NO_WAIT, sleep=lambda _: None
    )


def blocks(standin: ScicatStandin) -> list[dict[str, Any]]:
    return standin.origdatablocks


def assert_totals_match(standin: Any) -> None:
    for pid, dataset in standin.datasets.items():
        own = [b for b in standin.origdatablocks if b["datasetId"] == pid]
        assert dataset["size"] == sum(b["size"] for b in own), pid
        assert dataset["numberOfFiles"] == sum(len(b["dataFileList"]) for b in own), pid


class TestAccountTypes:
    def test_privileged_only_rerun_refuses_instead_of_duplicating(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """A privileged-only account's rerun (403 on every read) never adds a second block."""
        # Given an account only in CREATE_DATASET_PRIVILEGED_GROUPS and a file of another group
        path = other_group_file(data_root)
        config = config_for(make_config, scicat, "privingest")
        # When it is ingested: complete, although the account cannot read the dataset back
        first = run(config, path)
        assert first["dataset_created"] and first["origdatablock_created"]
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1
        # And it is ingested again with every record lost
        with pytest.raises(CannotVerify) as caught:
            run(config, path)
        # Then nothing was added: one dataset, one block, totals as SciCat made them
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1
        assert_totals_match(scicat)
        assert "403" in str(caught.value) and "ADMIN_GROUPS" in str(caught.value)

    def test_privileged_only_refuses_further_files_before_writing(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """Once a 403 showed the account cannot read back, other groups' files write nothing."""
        config = config_for(make_config, scicat, "privingest")
        rt = Runtime.from_config(config)
        ingest(
            rt,
            new_job(other_group_file(data_root), config.ingestion.allowed_data_roots),
            policy=NO_WAIT,
            sleep=lambda _: None,
        )
        second = other_group_file(data_root, "run-0002.hdf", job_id="0b1e7c4e-0000-4000-8000-000000000002")
        with pytest.raises(CannotVerify) as caught:
            ingest(
                rt, new_job(second, config.ingestion.allowed_data_roots), policy=NO_WAIT, sleep=lambda _: None
            )
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1
        assert "nothing was written" in str(caught.value)
        assert caught.value.to_dict()["hint"]

    @pytest.mark.parametrize(
        ("user", "sections"),
        [
            pytest.param("ingestor", {}, id="admin"),
            pytest.param("privymir", {}, id="privileged-reading-its-group"),
            pytest.param("ownymir", {}, id="with-pid-group"),
            pytest.param(
                "user1",
                {
                    "dataset": {"allow_dataset_pid": False},
                    "ingestion": {"check_if_dataset_exists_by_metadata": True},
                },
                id="plain-create-group",
            ),
        ],
    )
    def test_reruns_create_nothing(
        self, scicat: Any, make_config: Any, data_root: Path, user: str, sections: dict[str, Any]
    ) -> None:
        """Admin, privileged (own group), with-pid and plain accounts: three runs, one of each."""
        path = ymir_file(data_root)
        config = config_for(make_config, scicat, user, **sections)
        outcomes = [run(config, path) for _ in range(3)]
        assert [job["dataset_created"] for job in outcomes] == [True, False, False]
        assert [job["origdatablock_created"] for job in outcomes] == [True, False, False]
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1
        assert_totals_match(scicat)

    def test_v4_privileged_account_gets_its_block_through_v3(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """v4 refuses the block (no update right on another group's dataset): v3 takes it."""
        config = config_for(make_config, scicat, "privymir", scicat={"api_version": "v4"})
        path = ymir_file(data_root)
        outcomes = [run(config, path) for _ in range(2)]
        assert [job["origdatablock_created"] for job in outcomes] == [True, False]
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1

    @pytest.mark.parametrize("user", ["owningest", "user1"])
    def test_account_that_may_not_create_writes_nothing(
        self, scicat: Any, make_config: Any, data_root: Path, user: str
    ) -> None:
        """A with-pid account for another group, a plain account sending a pid: SciCat's 403."""
        config = config_for(make_config, scicat, user)
        with pytest.raises(ScicatRejected) as caught:
            run(config, other_group_file(data_root))
        assert caught.value.status == 403 and "Unauthorized to create this dataset" in str(caught.value)
        assert scicat.datasets == {} and blocks(scicat) == []

    @pytest.mark.parametrize("user", ["privingest", "owningest"])
    def test_account_that_may_not_read_the_proposal_writes_nothing(
        self, scicat: Any, make_config: Any, data_root: Path, user: str
    ) -> None:
        """YMIR's proposal (groups ess_proposal_876380, ymir) is not theirs: SciCat's 403 on its
        read ends the file in extract, before any write (as on the real backend)."""
        config = config_for(make_config, scicat, user)
        with pytest.raises(ScicatRejected) as caught:
            run(config, ymir_file(data_root))
        assert caught.value.status == 403 and "Unauthorized to this proposal" in str(caught.value)
        assert scicat.datasets == {} and blocks(scicat) == []

    def test_health_names_the_account_and_what_it_may_read(self, scicat: Any, make_config: Any) -> None:
        """health says which groups the account has and that reading others is not proven."""
        (check,) = [
            c
            for c in run_checks(config_for(make_config, scicat, "privingest"), redis=False)
            if c.name == "scicat"
        ]
        assert check.ok and "privgroup" in check.detail and "ADMIN_GROUPS" in check.detail

    def test_health_fails_for_a_token_scicat_takes_as_anonymous(self, scicat: Any, make_config: Any) -> None:
        """A bad token is anonymous to SciCat (403, never 401): health fails and says so."""
        config = make_config(scicat, scicat={"username": "", "password": "", "token": "garbage"})
        (check,) = [c for c in run_checks(config, redis=False) if c.name == "scicat"]
        assert not check.ok and "anonymous" in check.detail


class TestOddAnswers:
    def test_409_with_403_on_read_back_is_never_ours(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """Someone else's dataset at our pid, unreadable to us: no block is attached to it."""
        path = ymir_file(data_root)
        pid = "20.500.12269/0b1e7c4e-0000-4000-8000-000000000001"
        scicat.add_dataset({"pid": pid, "ownerGroup": "other", "sourceFolder": "/elsewhere", "size": 0})
        scicat.inject(Fault(method="GET", path_regex=r"/datasets/[^/]+$", status=403, times=None))
        with pytest.raises(CannotVerify):
            run(config_for(make_config, scicat), path)
        assert blocks(scicat) == []

    def test_403_on_the_block_list_is_never_no_blocks(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """A rerun that may read the dataset but gets 403 listing its blocks posts nothing."""
        path = ymir_file(data_root)
        config = config_for(make_config, scicat)
        run(config, path)
        scicat.inject(Fault(method="GET", path_regex=r"/origdatablocks$", status=403, times=None))
        with pytest.raises(CannotVerify):
            run(config, path)
        assert len(blocks(scicat)) == 1

    def test_html_answer_is_a_transient_client_error(self, scicat: Any, make_config: Any) -> None:
        """The client itself turns a 200 HTML page into ScicatUnavailable (retried everywhere)."""
        scicat.inject(Fault(method="GET", path_regex=r"/datasets/[^/]+$", status=200, raw_body=HTML))
        client = Runtime.from_config(config_for(make_config, scicat)).scicat
        with pytest.raises(ScicatUnavailable) as caught:
            client.get_dataset("20.500.12269/x")
        assert "HTML" in str(caught.value)

    def test_201_with_another_pid_is_found_by_later_runs(self, make_config: Any, data_root: Path) -> None:
        """A SciCat that stores our pid prefixed: the rerun finds it instead of creating another."""
        with seed(ScicatStandin(rewrite_pid_prefix="rewritten-")) as scicat:
            config = config_for(make_config, scicat, ingestion={"check_if_dataset_exists_by_metadata": True})
            path = ymir_file(data_root)
            first, second = run(config, path), run(config, path)
            assert first["pid"].startswith("rewritten-") and second["pid"] == first["pid"]
            assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1

    @pytest.mark.parametrize(
        "route", [r"/datasets/[^/]+$", r"/datasets/[^/]+/origdatablocks$"], ids=["dataset", "blocks"]
    )
    def test_html_on_a_look_up_is_transient(
        self, scicat: Any, make_config: Any, data_root: Path, route: str
    ) -> None:
        """A maintenance page (200, HTML) on a look-up is retried, not a traceback."""
        scicat.inject(Fault(method="GET", path_regex=route, status=200, raw_body=HTML))
        job = run(config_for(make_config, scicat), ymir_file(data_root))
        assert job["origdatablock_created"] and len(blocks(scicat)) == 1

    @pytest.mark.parametrize(
        "route", [r"/datasets$", r"/datasets/[^/]+/origdatablocks$"], ids=["search", "blocks"]
    )
    def test_a_list_answered_with_an_object_is_transient(
        self, scicat: Any, make_config: Any, data_root: Path, route: str
    ) -> None:
        """A JSON object where SciCat sends a list is not "none found": retried, never duplicated."""
        path = ymir_file(data_root)
        config = config_for(
            make_config,
            scicat,
            "user1",  # no pid: the rerun finds the dataset only by searching for its job id
            dataset={"allow_dataset_pid": False},
            ingestion={"check_if_dataset_exists_by_metadata": True},
        )
        run(config, path)
        scicat.inject(Fault(method="GET", path_regex=route, status=200, body={"status": "ok"}))
        job = run(config, path)
        assert job["origdatablock_created"] is False
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1

    def test_stored_create_with_unreadable_answer_is_rechecked(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """The dataset is stored but the answer is HTML: the retry finds it and attaches files."""
        scicat.inject(
            Fault(method="POST", path_regex=r"/datasets$", status=200, raw_body=HTML, after_handling=True)
        )
        job = run(config_for(make_config, scicat), ymir_file(data_root))
        assert job["origdatablock_created"]
        assert len(scicat.datasets) == 1 and len(blocks(scicat)) == 1
        assert_totals_match(scicat)


class TestTotals:
    def test_crash_between_block_and_totals_is_repaired(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """SciCat dies after storing the block, before the totals: the retry PATCHes them."""
        scicat.inject(Fault(method="POST", path_regex=r"/origdatablocks$", crash_before_totals=True))
        job = run(config_for(make_config, scicat), ymir_file(data_root))
        assert job["origdatablock_created"] is False and job["totals_repaired"] is True
        assert len(blocks(scicat)) == 1
        (dataset,) = scicat.datasets.values()
        assert dataset["size"] > 0
        assert_totals_match(scicat)

    def test_check_and_repair_are_plain_functions(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """check_totals/repair_totals work on any pid (the audit uses them)."""
        scicat.inject(Fault(method="POST", path_regex=r"/origdatablocks$", crash_before_totals=True))
        config = config_for(make_config, scicat)
        rt = Runtime.from_config(config)
        job = new_job(ymir_file(data_root), config.ingestion.allowed_data_roots)
        for step in ("select-schema", "extract", "build-dataset", "post-dataset"):
            job = STEP_FUNCTIONS[step](rt, job)
        with pytest.raises(IngestError):
            rt.scicat.create_origdatablock({"datasetId": job["pid"], **job["origdatablock"]})
        totals = check_totals(rt.scicat, job["pid"])
        assert not totals.ok and totals.size == 0 and totals.blocks == 1
        assert repair_totals(rt.scicat, totals).ok and check_totals(rt.scicat, job["pid"]).ok


class TestMessages:
    def test_v4_isvalid_rejection_says_why_there_is_no_reason(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """v4 answers only {"valid": false}: the message says so and what to do."""
        scicat.inject(
            Fault(method="POST", path_regex=r"/datasets/isValid$", status=200, body={"valid": False})
        )
        config = config_for(make_config, scicat, scicat={"api_version": "v4", "validate_before_write": True})
        with pytest.raises(ScicatRejected) as caught:
            run(config, ymir_file(data_root))
        assert "--dry-run" in str(caught.value) and "v3" in str(caught.value)
        assert scicat.datasets == {}

    def test_every_check_runs_before_the_first_write(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """An origdatablock isValid rejection leaves no dataset behind."""
        scicat.inject(
            Fault(
                method="POST",
                path_regex=r"/origdatablocks/isValid$",
                status=200,
                body={"valid": False, "errors": [{"property": "size"}]},
            )
        )
        config = config_for(make_config, scicat, scicat={"validate_before_write": True})
        with pytest.raises(ScicatRejected) as caught:
            run(config, ymir_file(data_root))
        assert "origdatablock" in str(caught.value)
        assert scicat.datasets == {} and blocks(scicat) == []

    def test_conflict_names_the_differing_field_and_both_values(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """Same pid, same sourceFolder, other ownerGroup: the message names ownerGroup."""
        path = ymir_file(data_root)
        config = config_for(make_config, scicat)
        run(config, path)
        (stored,) = scicat.datasets.values()
        scicat.reset()
        scicat.add_dataset({**stored, "ownerGroup": "someone_else"})
        with pytest.raises(IdempotencyConflict) as caught:
            run(config, path)
        text = str(caught.value)
        assert "ownerGroup" in text and "'someone_else'" in text and "'ess_proposal_876380'" in text

    def test_invalid_token_is_a_credentials_error(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """SciCat answers a bad token with 403 (anonymous): the error says credentials."""
        config = make_config(scicat, scicat={"username": "", "password": "", "token": "garbage"})
        with pytest.raises(ScicatAuthError) as caught:
            run(config, ymir_file(data_root))
        assert "credentials" in str(caught.value) and "anonymous" in str(caught.value)

    def test_token_scicat_no_longer_knows_is_renewed(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """SciCat restarted with a new JWT secret: our token is anonymous (403); log in again."""
        config = config_for(make_config, scicat)
        rt = Runtime.from_config(config)
        ingest(
            rt,
            new_job(ymir_file(data_root), config.ingestion.allowed_data_roots),
            policy=NO_WAIT,
            sleep=lambda _: None,
        )
        scicat.forget_tokens()
        second = ymir_file(data_root, "run-0002.hdf", job_id="0b1e7c4e-0000-4000-8000-000000000002")
        job = ingest(
            rt, new_job(second, config.ingestion.allowed_data_roots), policy=NO_WAIT, sleep=lambda _: None
        )
        assert job["origdatablock_created"] and len(blocks(scicat)) == 2

    def test_login_failure_is_not_a_schema_variable_error(
        self, scicat: Any, make_config: Any, data_root: Path
    ) -> None:
        """A wrong password is a login error, not "schema ...: variable proposal ..."."""
        config = make_config(scicat, scicat={"username": "ingestor", "password": "wrong"})
        with pytest.raises(ScicatAuthError) as caught:
            run(config, ymir_file(data_root))
        assert str(caught.value).startswith("SciCat login as 'ingestor'")
        assert "variable" not in str(caught.value)
