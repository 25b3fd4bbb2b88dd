"""scripts/reliability.py rewrites only its own part of RELIABILITY.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability.py"


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hand_written_sections_survive_a_new_run(tmp_path: Path) -> None:
    """The table between the markers is replaced; the sections around it stay word for word."""
    # Given a report with a generated table and hand-written sections before and after it
    report = script()
    path = tmp_path / "RELIABILITY.md"
    path.write_text(
        f"# Reliability\n\nIntro by hand.\n\n{report.BEGIN}\nold table\n{report.END}\n\n"
        "## Redis outages\n\nMeasured by hand.\n"
    )
    # When a new run writes its table
    report.write_report(path, "new table")
    # Then only the table changed
    text = path.read_text()
    assert "old table" not in text and f"{report.BEGIN}\nnew table\n{report.END}" in text
    assert text.startswith("# Reliability\n\nIntro by hand.\n")
    assert text.endswith("## Redis outages\n\nMeasured by hand.\n")


def test_a_report_without_markers_is_not_overwritten(tmp_path: Path) -> None:
    """Without the markers the script stops instead of dropping the sections written by hand."""
    path = tmp_path / "RELIABILITY.md"
    path.write_text("# Reliability\n\n## Orphaned writes\n\nBy hand.\n")
    with pytest.raises(SystemExit, match="writes from here"):
        script().write_report(path, "new table")
    assert "By hand." in path.read_text()


def test_the_repository_report_has_its_markers() -> None:
    """RELIABILITY.md itself can be regenerated without losing its hand-written sections."""
    text = (SCRIPT.parents[1] / "RELIABILITY.md").read_text()
    report = script()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    assert text.index(report.BEGIN) < text.index(report.END) < text.index("## Orphaned writes")
