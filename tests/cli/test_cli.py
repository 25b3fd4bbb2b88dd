"""The commands as users run them: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import cli, write_config, ymir_file


def test_ingest_now_prints_the_pid(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """ingest-now with the config from the environment prints the new dataset's pid."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    path = ymir_file(data_root, job_id="11111111-2222-4333-8444-555555555555")
    result = cli("offline-ingestor", "ingest-now", str(path), config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "20.500.12269/11111111-2222-4333-8444-555555555555"


def test_dry_run_prints_both_payloads_as_json(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """--dry-run prints the exact dataset and origdatablock and SciCat stays empty."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    result = cli("offline-ingestor", "ingest-now", "--dry-run", str(ymir_file(data_root)), "-c", str(config))
    assert result.returncode == 0, result.stderr
    payloads = json.loads(result.stdout)
    assert payloads["origdatablock"]["datasetId"] == payloads["dataset"]["pid"]
    assert payloads["dataset"]["principalInvestigator"] == "Lise Meitner"
    assert not standin.datasets


def test_json_summary(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """--json prints what was created."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    result = cli("offline-ingestor", "ingest-now", "--json", str(ymir_file(data_root)), config=config)
    summary = json.loads(result.stdout)
    assert summary["dataset_created"] is True and summary["origdatablock_created"] is True


def test_bad_input_is_one_line_and_exit_1(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """A missing file gives exit 1 and a single line naming the file and the step."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    missing = data_root / "nope.hdf"
    result = cli("offline-ingestor", "ingest-now", str(missing), config=config)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: file not found: {missing} [step select-schema, {missing}]"
    )


def test_scicat_down_exits_75(data_root: Path, tmp_path: Path, standin: Any) -> None:
    """SciCat unreachable is a temporary failure: exit 75, so a caller may retry later."""
    config = write_config(
        tmp_path / "c.yml",
        standin,
        data_root,
        scicat={"host": "http://127.0.0.1:9/api/v3", "max_retries": 0, "username": ""},
    )
    result = cli("offline-ingestor", "ingest-now", str(ymir_file(data_root)), config=config)
    assert result.returncode == 75, result.stderr
    assert "connection failed" in result.stderr


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    """An unknown config key is refused at start-up with the key's dotted name."""
    config = tmp_path / "c.yml"
    config.write_text("scicat:\n  hots: http://x\n")
    result = cli("offline-ingestor", "ingest-now", "x.hdf", config=config)
    assert result.returncode == 1 and "scicat.hots: unknown key" in result.stderr


def test_password_never_printed(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """Neither the password nor the token appears in any output, even on failure."""
    config = write_config(
        tmp_path / "c.yml", standin, data_root, logging={"logging_level": "DEBUG", "format": "json"}
    )
    result = cli(
        "offline-ingestor", "ingest-now", str(ymir_file(data_root)), config=config, password="s3cret-pw"
    )
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    ok = cli("offline-ingestor", "ingest-now", str(ymir_file(data_root, name="b.hdf")), config=config)
    assert ok.returncode == 0
    assert "ingestorpw" not in ok.stdout + ok.stderr and "eyJ" not in ok.stdout + ok.stderr


class TestDropIn:
    def test_success_then_already_ingested_both_exit_0(
        self, standin: Any, data_root: Path, tmp_path: Path
    ) -> None:
        """The ESS command line ingests, and a rerun is also exit 0 with nothing new."""
        config = write_config(tmp_path / "c.yml", standin, data_root)
        path = ymir_file(data_root)
        message = data_root / "ingestor" / "run.message.json"  # where upstream writes it
        message.parent.mkdir()
        message.write_text(json.dumps({"job_id": "wrdn-job-7", "file_name": str(path)}))
        args = (
            "scicat_background_ingestor",
            "-c",
            str(config),
            "--nexus-file",
            str(path),
            "--done-writing-message-file",
            str(message),
        )
        first, second = cli(*args), cli(*args)
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        assert len(standin.datasets) == 1
        (block,) = standin.origdatablocks
        assert str(message) in [entry["path"] for entry in block["dataFileList"]]

    def test_failure_is_non_zero_with_one_line(self, standin: Any, data_root: Path, tmp_path: Path) -> None:
        """A bad file makes the drop-in exit non-zero with a one-line reason."""
        config = write_config(tmp_path / "c.yml", standin, data_root)
        bad = data_root / "bad.hdf"
        bad.write_text("not hdf5")
        result = cli("scicat_background_ingestor", "-c", str(config), "--nexus-file", str(bad))
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith("error: not an HDF5 file")
