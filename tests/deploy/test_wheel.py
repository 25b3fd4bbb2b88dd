"""The built wheel (what the Docker image installs) works on its own: ``demo``, ``schemas check``.

Built from a copy of exactly what the Dockerfile copies (pyproject, README, src, schemas), and
installed without dependencies into a clean virtualenv that sees this environment's
dependencies but not its editable install of the package: a file missing from the wheel's
package data fails here as it does in the image.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with the freshly built wheel installed; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("src", "schemas"):  # symlinks kept: examples/schemas points at ../../../schemas
        shutil.copytree(
            ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("*.egg-info")
        )
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", ".", cwd=source)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("offline_ingestor-*.whl")
    venv = tmp / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp).returncode == 0
    python = venv / "bin" / "python"
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp
    ).stdout.strip()
    # Our dependencies from this environment; a path listed in a .pth is no site dir, so the
    # editable install's own .pth (which points at src/) is not read.
    deps = Path(shutil.which("python", path=str(Path(sys.executable).parent)) or sys.executable)
    site = run(
        deps, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp
    ).stdout.strip()
    (Path(purelib) / "zz-dependencies.pth").write_text(site + "\n")
    where = run(python, "-c", "import offline_ingestor; print(offline_ingestor.__file__)", cwd=tmp).stdout
    assert where.startswith(purelib), f"the package was imported from {where}, not the wheel"
    return venv / "bin"


def test_demo_runs_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    demo = run(wheel_venv / "offline-ingestor", "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    assert "SciCat holds 2 datasets, 2 origdatablocks" in demo.stdout


def test_the_wheel_holds_every_shipped_schema(wheel_venv: Path, tmp_path: Path) -> None:
    packaged = run(
        wheel_venv / "python",
        "-c",
        "from offline_ingestor.testing.scenario import SCHEMAS_DIR; print(SCHEMAS_DIR)",
        cwd=tmp_path,
    ).stdout.strip()
    shipped = sorted(path.relative_to(ROOT / "schemas") for path in (ROOT / "schemas").rglob("*.imsc.yml"))
    assert sorted(path.relative_to(packaged) for path in Path(packaged).rglob("*.imsc.yml")) == shipped
    for folder in (Path(packaged), Path(packaged) / "fallback"):
        check = run(wheel_venv / "offline-ingestor", "schemas", "check", folder, cwd=tmp_path)
        assert check.returncode == 0 and " 0 invalid" in check.stdout, check.stdout + check.stderr
