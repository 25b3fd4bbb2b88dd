"""Commands for operators and schema authors: health, schemas check, schemas explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import ROOT, TEST_SCHEMAS, cli, coverage_file, write_config, ymir_file


class TestSchemasCheck:
    def test_shipped_schemas_are_valid(self) -> None:
        """schemas check on the shipped folder lists each file as ok and exits 0."""
        result = cli("offline-ingestor", "schemas", "check", str(ROOT / "schemas"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 valid, 0 invalid" in result.stdout

    def test_errors_name_file_line_and_key(self, tmp_path: Path) -> None:
        """A broken schema is reported with its file, line and key; exit code 1."""
        broken = tmp_path / "broken.imsc.yml"
        text = (
            (ROOT / "schemas/ess-coda.imsc.yml")
            .read_text()
            .replace("value_type: integer}", "value_type: int}")
        )
        broken.write_text(text)
        line = next(no for no, row in enumerate(text.splitlines(), 1) if "value_type: int}" in row)
        result = cli("offline-ingestor", "schemas", "check", str(tmp_path))
        assert result.returncode == 1
        assert f"{broken}:{line}: variables.run_number" in result.stdout and "'int'" in result.stdout


class TestSchemasExplain:
    def test_explain_shows_schema_variables_sources_and_dataset(
        self, standin: Any, data_root: Path, tmp_path: Path
    ) -> None:
        """explain names the schema, each variable with value and source, and the dataset; writes nothing."""
        config = write_config(tmp_path / "c.yml", standin, data_root)
        result = cli(
            "offline-ingestor",
            "schemas",
            "explain",
            str(ymir_file(data_root, run_number=7)),
            "-c",
            str(config),
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "schema:   3d0c1f5e-ymir-offline-ingestor (ESS YMIR raw data)" in out
        assert "<- NXS /entry/entry_identifier" in out
        assert "<- SC GET proposals/<proposal_id>" in out
        assert "<- VALUE <proposal> | getitem" in out
        assert "<- built-in" in out
        assert '"principalInvestigator": "Lise Meitner"' in out
        assert not standin.datasets

    def test_explain_json(self, standin: Any, data_root: Path, tmp_path: Path) -> None:
        """--json gives every variable with its source, machine-readably."""
        schemas = tmp_path / "schemas"
        schemas.mkdir()
        (schemas / "coverage.imsc.yml").write_text((TEST_SCHEMAS / "coverage.imsc.yml").read_text())
        config = write_config(
            tmp_path / "c.yml", standin, data_root, ingestion={"schemas_directory": str(schemas)}
        )
        result = cli(
            "offline-ingestor",
            "schemas",
            "explain",
            "--json",
            str(coverage_file(data_root)),
            "-c",
            str(config),
        )
        data = json.loads(result.stdout)
        variables = {item["name"]: item for item in data["variables"]}
        assert variables["temperature"]["unit"] == "K"
        assert variables["temperature"]["source"] == "NXS /entry/sample/temperature"
        assert variables["total_counts"]["value"] == 12
        assert data["schema"]["id"] == "coverage-every-feature"


class TestHealth:
    def test_ready_when_everything_answers(
        self, standin: Any, data_root: Path, tmp_path: Path, redis_server: Any
    ) -> None:
        """health passes every check against a live Redis and SciCat."""
        config = write_config(tmp_path / "c.yml", standin, data_root, queue={"broker_url": redis_server.url})
        result = cli("offline-ingestor", "health", "--json", "-c", str(config))
        checks = {check["name"]: check for check in json.loads(result.stdout)}
        assert result.returncode == 0, result.stdout
        assert set(checks) == {"config", "schemas", "redis", "scicat", "data_roots"}
        assert all(check["ok"] for check in checks.values())

    def test_not_ready_names_what_failed(self, standin: Any, data_root: Path, tmp_path: Path) -> None:
        """With SciCat and Redis unreachable, health exits 1 and says which checks failed."""
        config = write_config(
            tmp_path / "c.yml",
            standin,
            data_root,
            scicat={"host": "http://127.0.0.1:9/api/v3", "max_retries": 0},
            queue={"broker_url": "redis://127.0.0.1:9/0"},
        )
        result = cli("offline-ingestor", "health", "-c", str(config))
        assert result.returncode == 1
        failed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("FAIL")}
        assert failed == {"redis", "scicat"}
