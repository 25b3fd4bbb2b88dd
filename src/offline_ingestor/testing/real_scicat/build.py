"""Find the SciCat backend's source archive and build it once into a cache folder.

The archive (``shared/reference/sources/scicat-backend-<commit>.tar.gz``) is a server to run,
like a container image: it is unpacked and built outside the repository, in
``~/.cache/offline-ingestor/scicat-backend-<sha256[:12]>/``, and rebuilt only when the
archive's hash changes (CI's ``../shared`` is read-only; a warm cache makes re-runs fast).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BackendMissing", "BuiltBackend", "cache_root", "ensure_built", "find_archive", "find_shared"]

#: The repository holding this file (src layout), for ``../shared`` beside the checkout.
_REPO = Path(__file__).resolve().parents[4]
_MARKER = ".built"


class BackendMissing(RuntimeError):
    """Something the real backend needs is not on this machine (one line: what and how to get it)."""


class BuiltBackend:
    """A built backend: ``root`` holds ``dist/main.js`` and ``node_modules``."""

    def __init__(self, root: Path, digest: str) -> None:
        self.root = root
        self.digest = digest

    @property
    def main_js(self) -> Path:
        return self.root / "dist" / "main.js"


def find_shared() -> Path | None:
    """``$OFFLINE_INGESTOR_SHARED`` or ``../shared`` beside the checkout (or the working folder)."""
    candidates = (
        [Path(os.environ["OFFLINE_INGESTOR_SHARED"])] if os.environ.get("OFFLINE_INGESTOR_SHARED") else []
    )
    candidates += [_REPO.parent / "shared", Path.cwd().parent / "shared"]
    return next((path for path in candidates if (path / "reference").is_dir()), None)


def find_archive() -> Path:
    """The backend archive: ``$OFFLINE_INGESTOR_SCICAT_BACKEND_ARCHIVE`` or the one in ``../shared``."""
    explicit = os.environ.get("OFFLINE_INGESTOR_SCICAT_BACKEND_ARCHIVE")
    if explicit:
        if not Path(explicit).is_file():
            raise BackendMissing(f"OFFLINE_INGESTOR_SCICAT_BACKEND_ARCHIVE={explicit} is not a file")
        return Path(explicit)
    shared = find_shared()
    found = sorted((shared / "reference/sources").glob("scicat-backend-*.tar.gz")) if shared else []
    if not found:
        raise BackendMissing(
            "the SciCat backend archive is missing: no ../shared/reference/sources/scicat-backend-*.tar.gz "
            "(set OFFLINE_INGESTOR_SHARED or OFFLINE_INGESTOR_SCICAT_BACKEND_ARCHIVE)"
        )
    return found[-1]


def require_node() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``; BackendMissing naming the one that is absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        raise BackendMissing("Node.js is missing: `node` is not on PATH (the backend needs Node >= 20)")
    if npm is None:
        raise BackendMissing("npm is missing: `npm` is not on PATH (it builds the backend once)")
    return node, npm


def cache_root() -> Path:
    """``$OFFLINE_INGESTOR_CACHE`` or ``$XDG_CACHE_HOME/offline-ingestor`` (``~/.cache/...``)."""
    if os.environ.get("OFFLINE_INGESTOR_CACHE"):
        return Path(os.environ["OFFLINE_INGESTOR_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "offline-ingestor"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file: two test runs on one machine build the backend once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], cwd: Path, log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(
            f"{' '.join(command)} failed (exit {result.returncode}) in {cwd}:\n" + "\n".join(tail)
        )


def ensure_built(archive: Path | None = None, *, log: Path | None = None) -> BuiltBackend:
    """Unpack and build the backend unless the cache already holds this archive's build.

    The build goes to a temporary sibling folder renamed into place at the end, so an
    interrupted build never looks finished.
    """
    archive = archive or find_archive()
    _, npm = require_node()
    digest = _digest(archive)
    root = cache_root()
    final = root / f"scicat-backend-{digest}"
    built = BuiltBackend(final / "scicat-backend", digest)
    if (final / _MARKER).is_file():
        return built
    with _locked(root / f"scicat-backend-{digest}.lock"):
        if (final / _MARKER).is_file():  # another process built it while we waited
            return built
        staging = root / f"scicat-backend-{digest}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        staging.mkdir(parents=True)
        build_log = log or staging / "build.log"
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        source = staging / "scicat-backend"
        if not (source / "package.json").is_file():
            raise BackendMissing(f"{archive} does not unpack into scicat-backend/ (no package.json)")
        # --ignore-scripts: no install hooks run (none is needed to build; the readme's recipe).
        _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], source, build_log)
        _run([npm, "run", "build"], source, build_log)
        if not (source / "dist" / "main.js").is_file():
            raise RuntimeError(f"npm run build left no dist/main.js in {source}")
        (staging / _MARKER).write_text(f"{archive.name} sha256:{digest}\n")
        staging.rename(final)
    return built
