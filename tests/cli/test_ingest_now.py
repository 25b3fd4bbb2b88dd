"""End to end, synchronously: the five steps against the SciCat stand-in over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import TEST_SCHEMAS, coverage_file, schemas_with, ymir_file
from offline_ingestor.errors import (
    IdempotencyConflict,
    InputFileError,
    NexusReadError,
    NoMatchingSchema,
    SchemaError,
    ScicatRejected,
    ScicatUnavailable,
)
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_FUNCTIONS
from offline_ingestor.testing import Fault

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def run(config: Any, path: Path, *, dry_run: bool = False) -> Any:
    """What ``ingest-now`` does (``ingest_path``), with a retry policy that does not wait."""
    rt = Runtime.from_config(config.as_dry_run() if dry_run else config)
    job = new_job(path, config.ingestion.allowed_data_roots, must_exist=False)  # as ingest_path
    return ingest(rt, job, policy=NO_WAIT, sleep=lambda _: None)


def odbs_of(standin: Any, pid: str) -> list[dict[str, Any]]:
    return [block for block in standin.origdatablocks if block["datasetId"] == pid]


class TestShippedSchemas:
    def test_ymir_file_becomes_one_dataset_with_one_origdatablock(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """A YMIR file is ingested with values from the file, SciCat and templates."""
        # Given a synthetic YMIR file and the shipped schemas
        path = ymir_file(data_root, job_id="0b1e7c4e-0000-4000-8000-000000000001", run_number=42)
        # When it is ingested
        job = run(make_config(standin), path)
        # Then SciCat holds one dataset built from the file, the proposal and the instrument
        dataset = standin.datasets[job["pid"]]
        assert job["pid"] == "20.500.12269/0b1e7c4e-0000-4000-8000-000000000001"
        assert dataset["principalInvestigators"] == ["Lise Meitner"]  # stored the v4 way
        assert dataset["contactEmail"] == "lise@ess.example"
        assert dataset["instrumentIds"] == ["ess-ymir-0001"]
        assert dataset["datasetName"] == "synthetic run (run 42)"
        assert dataset["sourceFolder"] == str(data_root / "ess/data/ymir/2024")
        assert dataset["keywords"] == ["YMIR", "YMIR"]
        assert dataset["scientificMetadata"]["acquisition_team_members"]["value"] == (
            "Anders Pettersson, Fredrik Bolmsten, Søren Schmidt"
        )
        assert dataset["scientificMetadata"]["run_number"]["value"] == 42
        # And one origdatablock with the data file (path relative to nothing it is not under)
        (block,) = odbs_of(standin, job["pid"])
        assert block["dataFileList"][0]["path"] == str(path)
        assert len(block["dataFileList"][0]["chk"]) == 128
        assert block["chkAlg"] == "blake2b"

    def test_second_run_creates_nothing(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """Ingesting the same file again leaves exactly one dataset and one origdatablock."""
        path = ymir_file(data_root)
        config = make_config(standin)
        first = run(config, path)
        second = run(config, path)
        assert first["dataset_created"] and not second["dataset_created"]
        assert second["origdatablock_created"] is False
        assert len(standin.datasets) == 1
        assert len(odbs_of(standin, first["pid"])) == 1

    def test_fallback_schema_takes_unmatched_files(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """A file no schema selects is ingested with the configured fallback schema."""
        path = ymir_file(data_root, name="unknown-instrument.hdf")
        path = path.rename(data_root / "elsewhere.hdf")
        job = run(make_config(standin), path)
        assert job["schema_id"] == "offline-ingestor-fallback"
        assert standin.datasets[job["pid"]]["principalInvestigators"] == ["Meitner"]


class TestEveryFeature:
    def test_every_source_operator_and_type(
        self, standin: Any, make_config: Any, data_root: Path, tmp_path: Path
    ) -> None:
        """The coverage schema's dataset has the value each source/operator/type must give."""
        schemas = schemas_with(tmp_path, TEST_SCHEMAS / "coverage.imsc.yml")
        config = make_config(
            standin, ingestion={"schemas_directory": str(schemas), "fallback_schema_file_path": ""}
        )
        path = coverage_file(data_root)
        job = run(config, path)
        dataset = standin.datasets[job["pid"]]
        meta = {key: item["value"] for key, item in dataset["scientificMetadata"].items()}
        assert dataset["datasetName"] == "LEGO TEST 1, CONT / lego test 1, cont"
        assert dataset["creationLocation"] == "ESS:ODIN"
        assert dataset["contactEmail"] == "ada@ess.example"
        assert dataset["sourceFolder"] == str(data_root / "ess/raw/test")
        assert dataset["keywords"] == ["coverage", "443503"]
        assert meta["temperature"] == 293.5
        assert dataset["scientificMetadata"]["temperature"]["unit"] == "K"
        assert dataset["scientificMetadata"]["temperature_mk"]["unit"] == "mK"
        assert meta["counts"] == [3, 4, 5] and meta["total_counts"] == 12
        assert meta["positions"] == [0.5, 1.5]
        assert meta["numbers"] == [293.5, 7.0] and meta["number_sum"] == 300.5
        assert meta["file_name"] == "coverage-1.nxs"
        assert meta["public_folder"] == str(data_root / "ess/public/test/2024")
        assert meta["link"] == "https://data.example/runs/Lego+Test+1%2C+cont"
        assert meta["nothing"] is None
        assert meta["as_list"] == ["coverage", "443503"]
        assert meta["proposal"]["pi_lastname"] == "Lovelace"
        assert meta["team"] == "Anders Pettersson, Fredrik Bolmsten, Søren Schmidt"
        assert meta["schema"] == "coverage-every-feature"
        assert dataset["creationTime"].startswith("2024-10-28T09:06:41.186")


class TestExactlyOnce:
    def test_kill_between_the_two_posts_then_rerun(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """A run that dies after the dataset POST is completed by a rerun, without duplicates."""
        config = make_config(standin)
        path = ymir_file(data_root)
        rt = Runtime.from_config(config)
        # Given a run that stopped right after creating the dataset (the process died)
        job = new_job(path, config.ingestion.allowed_data_roots)
        for step in ("select-schema", "extract", "build-dataset", "post-dataset"):
            job = STEP_FUNCTIONS[step](rt, job)
        assert len(standin.datasets) == 1 and not standin.origdatablocks
        # When the file is ingested again from scratch
        again = run(config, path)
        # Then there is one dataset with one origdatablock
        assert again["dataset_created"] is False and again["origdatablock_created"] is True
        assert len(standin.datasets) == 1 and len(odbs_of(standin, again["pid"])) == 1

    def test_lost_response_to_origdatablock_post_is_not_duplicated(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """SciCat stores the block but the answer is lost: the retry finds it, adds none."""
        standin.inject(
            Fault(
                method="POST",
                path_regex=r"origdatablocks$",
                reset_connection=True,
                after_handling=True,
                times=1,
            )
        )
        job = run(make_config(standin), ymir_file(data_root))
        assert len(odbs_of(standin, job["pid"])) == 1

    def test_lost_response_to_dataset_post_is_not_duplicated(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """The dataset was stored but the client saw an error: the retry sees it exists."""
        standin.inject(
            Fault(method="POST", path_regex=r"/datasets$", status=502, after_handling=True, times=1)
        )
        job = run(make_config(standin), ymir_file(data_root))
        assert len(standin.datasets) == 1 and len(odbs_of(standin, job["pid"])) == 1

    def test_foreign_dataset_with_our_pid_is_flagged(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """A pid that exists with other content is an IdempotencyConflict, nothing is attached."""
        config = make_config(standin)
        path = ymir_file(data_root, job_id="0b1e7c4e-0000-4000-8000-00000000dead")
        job = run(config, path, dry_run=True)
        foreign = {**job["dataset"], "sourceFolder": "/somewhere/else"}
        standin.add_dataset(foreign)
        with pytest.raises(IdempotencyConflict):
            run(config, path)
        assert not standin.origdatablocks

    def test_dataset_of_another_writer_job_is_not_ours(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """Same pid, sourceFolder, ownerGroup and type, but another file writer job: a conflict."""
        # Given SciCat holds our pid with every identity field equal but the job id
        config = make_config(standin)
        path = ymir_file(data_root, job_id="0b1e7c4e-0000-4000-8000-00000000beef")
        job = run(config, path, dry_run=True)
        meta = {**job["dataset"]["scientificMetadata"], "job_id": {"value": "another-job", "unit": ""}}
        standin.add_dataset({**job["dataset"], "scientificMetadata": meta})
        # When the file is ingested
        with pytest.raises(IdempotencyConflict, match="job_id") as caught:
            run(config, path)
        # Then the error names the field and both values, and nothing is attached
        assert "another-job" in str(caught.value) and "00000000beef" in str(caught.value)
        assert not standin.origdatablocks

    def test_409_for_our_own_dataset_is_ours(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A rerun that does not look the pid up first gets 409 and takes the dataset as ours."""
        # Given a file ingested once, and a config that POSTs without a GET first
        config = make_config(standin, ingestion={"check_if_dataset_exists_by_pid": False})
        path = ymir_file(data_root)
        first = run(config, path)
        # When it is ingested again
        second = run(config, path)
        # Then the POST got 409, the dataset is taken as ours, and nothing new is made
        posts = [
            status for method, p, status in standin.requests if method == "POST" and p.endswith("/datasets")
        ]
        assert posts == [201, 409]
        assert second["pid"] == first["pid"] and second["dataset_created"] is False
        assert len(standin.datasets) == 1 and len(odbs_of(standin, first["pid"])) == 1

    def test_409_for_a_foreign_dataset_is_a_conflict(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """A 409 whose dataset reads back as another file's is never ours."""
        config = make_config(standin, ingestion={"check_if_dataset_exists_by_pid": False})
        path = ymir_file(data_root, job_id="0b1e7c4e-0000-4000-8000-00000000f00d")
        job = run(config, path, dry_run=True)
        standin.add_dataset({**job["dataset"], "sourceFolder": "/somewhere/else"})
        with pytest.raises(IdempotencyConflict, match="sourceFolder"):
            run(config, path)
        assert not standin.origdatablocks


class TestScicatFaults:
    def test_503_is_retried(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """SciCat answering 503 a few times delays the ingestion but does not fail it."""
        standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=503, times=2))
        job = run(make_config(standin), ymir_file(data_root))
        assert job["pid"] in standin.datasets

    def test_scicat_down_is_transient(self, make_config: Any, data_root: Path, standin: Any) -> None:
        """No SciCat at all: a ScicatUnavailable naming the step, after the retries."""
        config = make_config(standin, scicat={"host": "http://127.0.0.1:9/api/v3", "max_retries": 0})
        with pytest.raises(ScicatUnavailable) as caught:
            run(config, ymir_file(data_root))
        assert caught.value.step == "extract" and "connection failed" in str(caught.value)

    def test_400_surfaces_the_server_message(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A 400 is permanent, not retried, and carries SciCat's own words."""
        body = {
            "status": 400,
            "message": json.dumps(
                [
                    {
                        "property": "ownerEmail",
                        "children": [],
                        "constraints": {"isEmail": "ownerEmail must be an email"},
                    }
                ]
            ),
        }
        standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=400, body=body, times=None))
        with pytest.raises(ScicatRejected) as caught:
            run(make_config(standin), ymir_file(data_root))
        assert caught.value.status == 400 and "ownerEmail must be an email" in str(caught.value)
        assert caught.value.step == "post-dataset"
        assert (
            sum(1 for method, path, _ in standin.requests if method == "POST" and path.endswith("/datasets"))
            == 1
        )

    def test_wrong_password_is_a_clear_401(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """Bad credentials fail at once with the account name, never the password."""
        config = make_config(
            standin, scicat={"host": standin.url_v3, "username": "ingestor", "password": "nope"}
        )
        with pytest.raises(ScicatRejected) as caught:
            run(config, ymir_file(data_root))
        assert (
            caught.value.status == 401 and "ingestor" in str(caught.value) and "nope" not in str(caught.value)
        )

    def test_403_for_an_account_without_rights(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """An account that may not create with a pid gets SciCat's 403 reason.

        (Proposal 999001 is readable by user1's group; YMIR's own would be a 403 on its read.)
        """
        config = make_config(
            standin, scicat={"host": standin.url_v3, "username": "user1", "password": "user1pw"}
        )
        with pytest.raises(ScicatRejected) as caught:
            run(config, ymir_file(data_root, proposal="999001"))
        assert caught.value.status == 403 and "Unauthorized to create this dataset" in str(caught.value)
        assert not standin.datasets

    def test_expired_token_logs_in_again(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A SESSION_EXPIRED 401 triggers one new login and the call goes through."""
        config = make_config(standin)
        rt = Runtime.from_config(config)
        ingest(
            rt,
            new_job(ymir_file(data_root, name="a.hdf"), config.ingestion.allowed_data_roots),
            policy=NO_WAIT,
        )
        standin.expire_tokens()
        job = ingest(
            rt,
            new_job(ymir_file(data_root, name="b.hdf"), config.ingestion.allowed_data_roots),
            policy=NO_WAIT,
        )
        assert job["pid"] in standin.datasets

    def test_is_valid_rejection_writes_nothing(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """With validate_before_write, a dataset SciCat calls invalid is never posted."""
        config = make_config(
            standin,
            scicat={
                "host": standin.url_v3,
                "username": "ingestor",
                "password": "ingestorpw",
                "validate_before_write": True,
            },
        )
        standin.inject(
            Fault(
                method="POST",
                path_regex=r"isValid$",
                status=200,
                body={"valid": False, "error": "contactEmail must be an email"},
                times=None,
            )
        )
        with pytest.raises(ScicatRejected, match="contactEmail must be an email"):
            run(config, ymir_file(data_root))
        assert not standin.datasets

    def test_v4_api(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """With api_version v4 the payload uses v4 names and v4 endpoints."""
        config = make_config(
            standin,
            scicat={
                "host": standin.base_url,
                "username": "ingestor",
                "password": "ingestorpw",
                "api_version": "v4",
            },
        )
        job = run(config, ymir_file(data_root))
        assert job["dataset"]["principalInvestigators"] == ["Lise Meitner"]
        assert "principalInvestigator" not in job["dataset"]
        assert any(path.startswith("/api/v4/datasets") for _, path, _ in standin.requests)
        assert len(odbs_of(standin, job["pid"])) == 1


class TestBadInput:
    @pytest.mark.parametrize(
        ("make", "error", "text"),
        [
            (lambda root: root / "missing.hdf", InputFileError, "file not found"),
            (
                lambda root: (root / "empty.hdf").touch() or root / "empty.hdf",
                InputFileError,
                "file is empty",
            ),
            (
                lambda root: (root / "text.hdf").write_text("hello, not HDF5") and root / "text.hdf",
                InputFileError,
                "not an HDF5 file",
            ),
            (lambda root: (root / "adir.hdf").mkdir() or root / "adir.hdf", InputFileError, "directory"),
        ],
    )
    def test_unusable_files(
        self, standin: Any, make_config: Any, data_root: Path, make: Any, error: type, text: str
    ) -> None:
        """Missing, empty, non-HDF5 files and directories fail in select-schema, clearly."""
        with pytest.raises(error) as caught:
            run(make_config(standin), make(data_root))
        assert text in str(caught.value) and caught.value.step == "select-schema"
        assert not standin.datasets

    def test_truncated_file(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A cut-off HDF5 file is reported as truncated or corrupt, nothing written."""
        path = ymir_file(data_root, extra={"/entry/padding": list(range(5000))})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputFileError):
            run(make_config(standin), path)
        assert not standin.datasets

    def test_missing_nexus_path(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A schema path absent from the file names the variable and the path."""
        from offline_ingestor.testing.nexus_factory import write_nexus

        path = write_nexus(data_root / "ess/raw/ymir/x/y/bad-ymir.hdf", {"/entry/title": "x"})
        with pytest.raises(NexusReadError, match="entry_identifier_uuid not found"):
            run(make_config(standin), path)

    def test_wrong_type(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A run number that is not a number is a VariableError naming run_number."""
        path = ymir_file(data_root, extra={"/entry/entry_identifier": "eleven"})
        with pytest.raises(Exception, match="run_number") as caught:
            run(make_config(standin), path)
        assert caught.value.step == "extract"

    def test_outside_data_roots_is_refused(self, standin: Any, make_config: Any, tmp_path: Path) -> None:
        """A path outside the allowed roots is refused before it is opened."""
        outside = ymir_file(tmp_path / "other")
        with pytest.raises(InputFileError, match="outside the allowed data roots"):
            run(make_config(standin), outside)

    def test_no_matching_schema_without_fallback(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """Without a fallback, an unmatched file is NoMatchingSchema."""
        config = make_config(standin, ingestion={"fallback_schema_file_path": ""})
        path = ymir_file(data_root).rename(data_root / "nothing-matches.hdf")
        with pytest.raises(NoMatchingSchema):
            run(config, path)

    def test_broken_schema_fails_its_files_only(
        self, standin: Any, make_config: Any, data_root: Path, tmp_path: Path
    ) -> None:
        """A broken schema claims its files with SchemaError; other schemas keep working."""
        from helpers import ROOT

        schemas = schemas_with(tmp_path, ROOT / "schemas/ess-coda.imsc.yml")
        (schemas / "broken-ymir.imsc.yml").write_text(
            (ROOT / "schemas/ess-ymir.imsc.yml").read_text().replace("operator: getitem", "operator: pick", 1)
        )
        config = make_config(standin, ingestion={"schemas_directory": str(schemas)})
        with pytest.raises(SchemaError, match="unknown operator 'pick'"):
            run(config, ymir_file(data_root))
        coda = ymir_file(data_root, name="small-coda-1.hdf", instrument="ODIN", proposal="443503")
        coda = coda.rename(data_root / "coda-run.hdf")
        assert run(config, coda)["schema_id"] == "9a4e2b71-coda-offline-ingestor"


class TestDryRun:
    def test_dry_run_writes_nothing(self, standin: Any, make_config: Any, data_root: Path) -> None:
        """A dry run builds both payloads and sends no POST."""
        job = run(make_config(standin), ymir_file(data_root), dry_run=True)
        assert job["dataset"]["pid"].startswith("20.500.12269/")
        assert job["origdatablock"]["dataFileList"]
        assert not standin.datasets and all(
            method == "GET" or "login" in path for method, path, _ in standin.requests
        )


class TestOptionalFeatures:
    def test_sample_attachment_adds_the_sample_id(
        self, standin: Any, make_config: Any, data_root: Path, tmp_path: Path
    ) -> None:
        """sample_attachment looks the sample up by name and proposal and sets sampleId."""
        from helpers import ROOT

        standin.add_sample({"sampleId": "sample-42", "description": "A Sample", "proposalId": "876380"})
        standin.add_sample({"sampleId": "sample-other", "description": "A Sample", "proposalId": "111111"})
        text = (ROOT / "schemas/ess-ymir.imsc.yml").read_text()
        schemas = tmp_path / "schemas"
        schemas.mkdir()
        (schemas / "ymir.imsc.yml").write_text(text + "sample_attachment:\n  query_sample_name: true\n")
        config = make_config(standin, ingestion={"schemas_directory": str(schemas)})
        job = run(config, ymir_file(data_root))
        assert job["dataset"]["sampleId"] == "sample-42"
        assert standin.datasets[job["pid"]]["sampleIds"] == ["sample-42"]

    def test_static_token_instead_of_login(
        self, standin: Any, make_config: Any, data_root: Path, monkeypatch: Any
    ) -> None:
        """A token from the environment is used as is: no login call is made."""
        monkeypatch.setenv("OFFLINE_INGESTOR_SCICAT_TOKEN", standin.login_token("ingestor"))
        config = make_config(standin, scicat={"host": standin.url_v3, "username": "", "password": ""})
        job = run(config, ymir_file(data_root))
        assert job["pid"] in standin.datasets
        assert not any("login" in path for _, path, _ in standin.requests)


class TestDryRunWritesNothing:
    def test_no_hash_file_is_written_but_it_is_listed(
        self, standin: Any, make_config: Any, data_root: Path
    ) -> None:
        """A dry run lists the hash file it would write, with its size, and writes none."""
        config = make_config(standin)
        job = run(config, ymir_file(data_root), dry_run=True)
        hash_entry = job["origdatablock"]["dataFileList"][-1]
        assert hash_entry["path"].endswith("run-0001.b2b") and hash_entry["size"] == 128
        assert not (data_root / "ingestor").exists()
        # And a real run writes it, listed the same way.
        real = run(config, ymir_file(data_root))
        written = real["origdatablock"]["dataFileList"][-1]
        assert (written["path"], written["size"], written["perm"]) == (
            hash_entry["path"],
            hash_entry["size"],
            hash_entry["perm"],
        )

    def test_schema_v4_names_are_not_overwritten_by_defaults(
        self, standin: Any, make_config: Any, data_root: Path, tmp_path: Path
    ) -> None:
        """A schema's proposalIds wins over dataset.default_proposal_id."""
        from helpers import ROOT

        text = (
            (ROOT / "schemas/ess-ymir.imsc.yml")
            .read_text()
            .replace(
                "machine_name: proposalId, value: <proposal_id>, type: string",
                'machine_name: proposalIds, value: [<proposal_id>], type: "string[]"',
            )
        )
        schemas = tmp_path / "schemas"
        schemas.mkdir()
        (schemas / "ymir.imsc.yml").write_text(text)
        config = make_config(
            standin, ingestion={"schemas_directory": str(schemas)}, dataset={"default_proposal_id": "DEFAULT"}
        )
        job = run(config, ymir_file(data_root), dry_run=True)
        assert job["dataset"]["proposalId"] == "876380"
