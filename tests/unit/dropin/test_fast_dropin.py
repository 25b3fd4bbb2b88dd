"""The drop-in's fast path decides cheaply and conservatively when it may spool (dropin/fast.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from offline_ingestor.config import load_config, parse_config
from offline_ingestor.dropin import fast as fast_dropin
from offline_ingestor.queue.broker_identity import broker_identity


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["-c", "c.yml", "--nexus-file", "f.hdf"], ("c.yml", "f.hdf", None)),
        (["--config-file=c.yml", "--nexus-file=f.hdf", "--id", "x"], ("c.yml", "f.hdf", None)),
        (
            ["--nexus-file", "f.hdf", "--done-writing-message-file", "m.json", "-c", "c.yml"],
            ("c.yml", "f.hdf", "m.json"),
        ),
        # As click reads them on the slow path: an attached short value, the last repeat wins
        (["-cc.yml", "--nexus-file", "f.hdf"], ("c.yml", "f.hdf", None)),
        (["-c", "c.yml", "--nexus-file", "f.hdf", "--nexus-file", "g.hdf"], ("c.yml", "g.hdf", None)),
    ],
)
def test_the_drop_ins_own_options_are_parsed(argv: list[str], parsed: tuple[str, str, str | None]) -> None:
    """The options the online ingestor passes, in any order and either spelling."""
    args = fast_dropin._parse(argv)
    assert args is not None and (args.config, args.nexus_file, args.message_file) == parsed


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "c.yml"],  # no file: click's usage error
        ["-c", "c.yml", "--nexus-file", "f.hdf", "--logging.verbose"],  # upstream's flags
        ["-c", "c.yml", "--nexus-file", "f.hdf", "-d"],  # dry run
        ["--help"],
    ],
)
def test_anything_else_takes_the_slow_path(argv: list[str]) -> None:
    assert fast_dropin._parse(argv) is None


def test_broker_identity_names_no_password() -> None:
    config = parse_config({"queue": {"broker_url": "redis://:s3cret@redis-host:6379/0", "queue_name": "q"}})
    identity = broker_identity(config.queue)
    assert "s3cret" not in identity and "redis-host:6379/0" in identity and "queue q" in identity


def test_a_recorded_config_is_found_until_its_bytes_or_environment_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a config recorded after a full load, the same bytes find the record; edits do not."""
    path = tmp_path / "etc" / "c.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"queue": {"enabled": True, "spool_dir": "../spool"}}))
    config = load_config(path)
    fast_dropin.remember_config(str(path), config, path.read_bytes())
    record = fast_dropin._accepted(str(path))
    # The relative spool resolves as Config.resolve does (one shared rule)
    assert record is not None and record["spool_dir"] == str(config.resolve("../spool"))
    assert Path(record["spool_dir"]) == tmp_path / "etc" / ".." / "spool"
    monkeypatch.setenv("OFFLINE_INGESTOR_BROKER_URL", "redis://elsewhere:6379/0")
    assert fast_dropin._accepted(str(path)) is None
    monkeypatch.delenv("OFFLINE_INGESTOR_BROKER_URL")
    path.write_text(path.read_text() + "# edited\n")
    assert fast_dropin._accepted(str(path)) is None


def test_a_dry_run_or_spool_less_config_is_never_recorded(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        yaml.safe_dump({"queue": {"enabled": True, "spool_dir": "spool"}, "ingestion": {"dry_run": True}})
    )
    fast_dropin.remember_config(str(path), load_config(path), path.read_bytes())
    assert fast_dropin._accepted(str(path)) is None and not (tmp_path / "spool").exists()
