"""Hostile input through the real commands (issue 12, items 1, 11, 13, 14).

Each case runs ``offline-ingestor``/``scicat_background_ingestor`` as a real process and
asserts one line on stderr, no traceback, and a non-zero exit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from helpers import cli, linked_out_of_the_root, string_vds_file, write_config, ymir_file
from offline_ingestor.config import load_config
from offline_ingestor.errors import ConfigError


def last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def assert_one_line(result: Any) -> str:
    """The refusal's line: stderr's last, or (enqueue reports every path) stdout's last."""
    assert result.returncode not in (0, -11, 139), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return last_line(result.stderr) or last_line(result.stdout)


class TestEscapes:
    """Item 1 end to end: the outside value never reaches SciCat."""

    def test_external_link_out_of_the_root_is_refused_by_ingest_now(
        self, standin: Any, data_root: Path, tmp_path: Path
    ) -> None:
        path = linked_out_of_the_root(data_root, tmp_path / "outside.h5")
        config = write_config(tmp_path / "c.yml", standin, data_root)
        result = cli("offline-ingestor", "ingest-now", str(path), config=config)
        line = assert_one_line(result)
        assert "outside the allowed data roots: refused" in line and "step extract" in line
        assert not standin.datasets


class TestCrashingReader:
    """Item 11: libhdf5 crashing ends the command with one line naming file and step."""

    def test_string_vds_is_refused_in_process(self, standin: Any, data_root: Path, tmp_path: Path) -> None:
        path = string_vds_file(data_root)
        config = write_config(tmp_path / "c.yml", standin, data_root)
        line = assert_one_line(cli("offline-ingestor", "ingest-now", str(path), config=config))
        assert "string virtual dataset" in line and "step extract" in line and str(path) in line

    @pytest.mark.parametrize("command", ["ingest-now", "drop-in"])
    def test_libhdf5_segfault_in_the_child_is_one_line(
        self, standin: Any, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
    ) -> None:
        """With the in-process guard off, the crash happens for real: in the child only."""
        monkeypatch.setenv("OFFLINE_INGESTOR_UNSAFE_VDS", "1")
        path = string_vds_file(data_root)
        config = write_config(tmp_path / "c.yml", standin, data_root)
        if command == "ingest-now":
            result = cli("offline-ingestor", "ingest-now", str(path), config=config)
        else:
            result = cli("scicat_background_ingestor", "-c", str(config), "--nexus-file", str(path))
        line = assert_one_line(result)
        assert "crashed the HDF5 reader (killed by SIGSEGV)" in line, result.stderr
        assert "step extract" in line and str(path) in line


class TestNonUtf8Names:
    """Item 13: a file name that is not UTF-8 is a one-line refusal everywhere."""

    @pytest.fixture
    def bad_name(self, data_root: Path) -> Path:
        raw = os.fsencode(data_root) + b"/run-\xff\xfe.hdf"
        path = Path(os.fsdecode(raw))
        ymir_file(data_root, name="tmp.hdf").rename(path)
        return path

    @pytest.mark.parametrize("command", ["ingest-now", "enqueue", "drop-in", "explain"])
    def test_refused_with_one_line(
        self, standin: Any, data_root: Path, tmp_path: Path, bad_name: Path, command: str
    ) -> None:
        config = write_config(
            tmp_path / "c.yml", standin, data_root, queue={"broker_url": "redis://127.0.0.1:9/0"}
        )
        args = {
            "ingest-now": ["offline-ingestor", "ingest-now", str(bad_name)],
            "enqueue": ["offline-ingestor", "enqueue", str(bad_name)],
            "drop-in": ["scicat_background_ingestor", "-c", str(config), "--nexus-file", str(bad_name)],
            "explain": ["offline-ingestor", "schemas", "explain", str(bad_name)],
        }[command]
        line = assert_one_line(cli(*args, config=config))
        assert "file name is not valid UTF-8" in line and "run-\\xff\\xfe.hdf" in line

    def test_enqueue_from_stdin_is_refused_with_one_line(
        self, standin: Any, data_root: Path, tmp_path: Path, bad_name: Path
    ) -> None:
        import subprocess

        from helpers import BIN

        config = write_config(
            tmp_path / "c.yml", standin, data_root, queue={"broker_url": "redis://127.0.0.1:9/0"}
        )
        result = subprocess.run(
            [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config)],
            input=os.fsencode(bad_name) + b"\n",
            capture_output=True,
            # As under a UTF-8 locale such as en_US.UTF-8: strict stdin (C.UTF-8 escapes silently).
            env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
            timeout=120,
        )
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode not in (0, 139) and "Traceback" not in stderr, stderr
        # enqueue reports every path it read on stdout: this one as refused, with why
        assert "file name is not valid UTF-8" in last_line(result.stdout.decode("utf-8", "strict"))


class TestSecrets:
    """Item 14: config errors never print a secret's value."""

    def test_numeric_password_is_not_echoed(self, tmp_path: Path) -> None:
        path = tmp_path / "c.yml"
        path.write_text("scicat:\n  username: ingestor\n  password: [987654321]\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert "scicat.password" in str(caught.value)
        assert "987654321" not in str(caught.value)

    def test_yaml_error_on_the_password_line_shows_problem_and_line_only(self, tmp_path: Path) -> None:
        path = tmp_path / "c.yml"
        path.write_text('scicat:\n  username: ingestor\n  password: "hunter2-secret\n  host: x\n')
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        message = str(caught.value)
        assert "hunter2" not in message
        assert "invalid YAML" in message and "\n" not in message

    def test_through_the_cli_too(self, tmp_path: Path) -> None:
        path = tmp_path / "c.yml"
        path.write_text("scicat:\n  token: {value: tok-987654321}\n")
        result = cli("offline-ingestor", "ingest-now", "x.hdf", config=path)
        assert result.returncode == 1
        assert "987654321" not in result.stdout + result.stderr
        assert "scicat.token" in result.stderr
