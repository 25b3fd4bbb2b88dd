"""Crafted HDF5 files: links out of the data roots, loops, budgets (issue 12, items 1 and 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest

from offline_ingestor.errors import NexusReadError
from offline_ingestor.files.nexus import NexusValue, ReadLimits, open_nexus, read_path
from offline_ingestor.testing.nexus_factory import write_nexus


@pytest.fixture
def root(tmp_path: Path) -> Path:
    inside = tmp_path / "root"
    inside.mkdir()
    return inside


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An HDF5 file outside the root holding a secret title."""
    return write_nexus(tmp_path / "elsewhere" / "secret.h5", {"/entry/title": "SECRET"})


def read(path: Path, nexus_path: str, limits: ReadLimits) -> list[NexusValue]:
    with open_nexus(path, limits) as handle:
        return read_path(handle, nexus_path)


def in_root(root: Path) -> ReadLimits:
    return ReadLimits(roots=(str(root),))


def linking_file(path: Path, name: str, link: h5py.ExternalLink | h5py.SoftLink) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_group("entry")
        handle["entry"][name] = link
    return path


class TestExternalLinks:
    def test_link_outside_the_roots_is_refused(self, root: Path, outside: Path) -> None:
        """/entry/title as an external link to a file outside the roots is never read."""
        path = linking_file(root / "run.h5", "title", h5py.ExternalLink(str(outside), "/entry/title"))
        with pytest.raises(NexusReadError, match="outside the allowed data roots: refused") as caught:
            read(path, "/entry/title", in_root(root))
        assert "SECRET" not in str(caught.value)

    def test_relative_link_climbing_out_is_refused(self, root: Path, outside: Path) -> None:
        """A relative ``../elsewhere/secret.h5`` resolves against the file's folder: refused."""
        path = linking_file(
            root / "run.h5", "title", h5py.ExternalLink("../elsewhere/secret.h5", "/entry/title")
        )
        with pytest.raises(NexusReadError, match="outside the allowed data roots"):
            read(path, "/entry/title", in_root(root))

    def test_link_through_a_group_is_refused_at_the_group(self, root: Path, outside: Path) -> None:
        """A link on a path component (not the dataset) is checked too; wildcards as well."""
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle["entry"] = h5py.ExternalLink(str(outside), "/entry")
        for nexus_path in ("/entry/title", "/*/title"):
            with pytest.raises(NexusReadError, match="outside the allowed data roots"):
                read(path, nexus_path, in_root(root))

    def test_link_inside_the_roots_is_followed(self, root: Path) -> None:
        """External links between files of the same data root still work."""
        write_nexus(root / "meta.h5", {"/entry/title": "inside"})
        path = linking_file(root / "run.h5", "title", h5py.ExternalLink("meta.h5", "/entry/title"))
        assert read(path, "/entry/title", in_root(root))[0].value == "inside"

    def test_broken_link_is_one_line(self, root: Path) -> None:
        """A link to a missing file is a NexusReadError naming the path, not a KeyError."""
        path = linking_file(root / "run.h5", "title", h5py.ExternalLink("missing.h5", "/entry/title"))
        with pytest.raises(
            NexusReadError, match=r"^NeXus path /entry/title: cannot follow external link"
        ) as caught:
            read(path, "/entry/title", in_root(root))
        assert "\n" not in str(caught.value)

    def test_link_to_a_non_hdf5_file_is_one_line(self, root: Path) -> None:
        """A link to a text file (``/etc/passwd`` inside a root) is a NexusReadError."""
        (root / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        path = linking_file(root / "run.h5", "title", h5py.ExternalLink("passwd", "/entry/title"))
        with pytest.raises(NexusReadError, match="cannot follow external link") as caught:
            read(path, "/entry/title", in_root(root))
        assert "\n" not in str(caught.value)

    def test_link_to_etc_passwd_is_refused(self, root: Path) -> None:
        path = linking_file(root / "run.h5", "title", h5py.ExternalLink("/etc/passwd", "/x"))
        with pytest.raises(NexusReadError, match="/etc/passwd is outside the allowed data roots"):
            read(path, "/entry/title", in_root(root))

    def test_link_to_a_fifo_does_not_hang(self, root: Path) -> None:
        """A FIFO as link target would block the open forever: refused before opening."""
        import os

        os.mkfifo(root / "pipe")
        path = linking_file(root / "run.h5", "title", h5py.ExternalLink("pipe", "/x"))
        with pytest.raises(NexusReadError, match="is not a regular file: refused"):
            read(path, "/entry/title", in_root(root))

    def test_soft_link_loop_is_one_line(self, root: Path) -> None:
        """``/entry/a → /entry/b → /entry/a`` is a NexusReadError, not a RuntimeError."""
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle.create_group("entry")
            handle["entry/a"] = h5py.SoftLink("/entry/b")
            handle["entry/b"] = h5py.SoftLink("/entry/a")
        with pytest.raises(NexusReadError, match="/entry/a: cannot follow soft link"):
            read(path, "/entry/a", in_root(root))

    def test_soft_link_to_an_external_link_is_checked_at_every_hop(self, root: Path) -> None:
        """``/entry/title → /ext/x`` where ``/ext`` links to a FIFO: refused, never opened."""
        import os

        os.mkfifo(root / "pipe")
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle.create_group("entry")
            handle["ext"] = h5py.ExternalLink("pipe", "/")
            handle["entry/title"] = h5py.SoftLink("/ext/x")
            handle["entry/rel"] = h5py.SoftLink("title")
        for nexus_path in ("/entry/title", "/entry/rel"):
            with pytest.raises(NexusReadError, match="pipe is not a regular file: refused"):
                read(path, nexus_path, in_root(root))

    def test_soft_links_inside_the_file_still_work(self, root: Path) -> None:
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle["/entry/real/title"] = "via link"
            handle["entry/abs"] = h5py.SoftLink("/entry/real/title")
            handle["entry/rel"] = h5py.SoftLink("real/title")
            handle["entry/group"] = h5py.SoftLink("/entry/real")
        for nexus_path in ("/entry/abs", "/entry/rel", "/entry/group/title", "/entry/*/title"):
            assert read(path, nexus_path, in_root(root))[0].value == "via link"


class TestVirtualAndExternalStorage:
    def test_vds_source_outside_the_roots_is_refused(self, root: Path, outside: Path) -> None:
        """A virtual dataset mapping a file outside the roots is not read."""
        with h5py.File(outside, "a") as handle:
            handle["numbers"] = np.arange(4)
        layout = h5py.VirtualLayout(shape=(4,), dtype="i8")
        layout[:] = h5py.VirtualSource(str(outside), "numbers", shape=(4,))
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle.create_virtual_dataset("/entry/numbers", layout)
        with pytest.raises(NexusReadError, match=r"virtual dataset source .* outside the allowed data roots"):
            read(path, "/entry/numbers", in_root(root))

    def test_vds_inside_the_roots_is_read(self, root: Path) -> None:
        write_nexus(root / "src.h5", {"/numbers": np.arange(3)})
        layout = h5py.VirtualLayout(shape=(3,), dtype="i8")
        layout[:] = h5py.VirtualSource("src.h5", "numbers", shape=(3,))
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle.create_virtual_dataset("/entry/numbers", layout)
        assert read(path, "/entry/numbers", in_root(root))[0].value == [0, 1, 2]

    def test_string_vds_with_mismatched_source_is_refused_in_process(self, root: Path) -> None:
        """The libhdf5 segfault case (vlen source, fixed-length VDS) is refused before reading."""
        path = string_vds(root)
        with pytest.raises(NexusReadError, match=r"string virtual dataset .* not read"):
            read(path, "/entry/title", in_root(root))

    def test_external_raw_storage_outside_the_roots_is_refused(self, root: Path, tmp_path: Path) -> None:
        """Contiguous raw data kept in an external file outside the roots is not read."""
        raw = tmp_path / "elsewhere" / "raw.bin"
        raw.parent.mkdir(exist_ok=True)
        raw.write_bytes(b"SECRET!!")
        path = root / "run.h5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("/entry/title", shape=(8,), dtype="u1", external=[(str(raw), 0, 8)])
        with pytest.raises(NexusReadError, match=r"external raw-data file .* outside the allowed data roots"):
            read(path, "/entry/title", in_root(root))


def string_vds(root: Path) -> Path:
    """A fixed-length string VDS over a variable-length string source: libhdf5 segfaults."""
    write_nexus(root / "src.h5", {"/names": np.array(["abc", "de"], dtype=h5py.string_dtype())})
    layout = h5py.VirtualLayout(shape=(2,), dtype="S3")
    layout[:] = h5py.VirtualSource("src.h5", "names", shape=(2,))
    path = root / "run.h5"
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("/entry/title", layout)
    return path


class TestBudgets:
    def test_compressed_long_strings_are_refused_before_reading(self, root: Path) -> None:
        """100 gzip-compressed 1 MB strings: a small file, a 100 MB value; refused from the type."""
        path = root / "bomb.h5"
        with h5py.File(path, "w") as handle:
            data = np.full(100, b"x" * 1_000_000, dtype="S1000000")
            handle.create_dataset("/entry/title", data=data, compression="gzip", chunks=(1,))
        assert path.stat().st_size < 5_000_000
        with pytest.raises(NexusReadError, match=r"value of 100000000 bytes exceeds the limit of 1000000"):
            read(path, "/entry/title", in_root(root))

    def test_sub_array_dtype_is_charged_by_its_full_size(self, root: Path) -> None:
        """A scalar whose dtype is a 4000x4000 sub-array is 128 MB in memory: refused."""
        path = root / "sub.h5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("/entry/x", shape=(), dtype=np.dtype(("f8", (4000, 4000))))
        with pytest.raises(NexusReadError, match="max_value_bytes"):
            read(path, "/entry/x", in_root(root))

    def test_per_file_budget_counts_every_value(self, root: Path) -> None:
        """Values under the per-value limit still add up to the per-file limit."""
        path = write_nexus(root / "many.h5", {f"/entry/v{i}": "y" * 600 for i in range(4)})
        limits = ReadLimits(roots=(str(root),), max_value_bytes=1000, max_file_bytes=2000)
        with pytest.raises(
            NexusReadError, match=r"exceed 2000 bytes \(ingestion.nexus_reading.max_file_bytes\)"
        ):
            read(path, "/entry/v*", limits)

    def test_wildcard_matches_are_capped(self, root: Path) -> None:
        """Thousands of groups under ``/entry/user_*/name`` stop at the cap, naming it."""
        path = root / "users.h5"
        with h5py.File(path, "w") as handle:
            for i in range(60):
                handle[f"/entry/user_{i:03}/name"] = "u"
        limits = ReadLimits(roots=(str(root),), max_wildcard_matches=50)
        with pytest.raises(NexusReadError, match=r"matches more than 50 datasets .*max_wildcard_matches"):
            read(path, "/entry/user_*/name", limits)

    def test_time_limit_names_the_path_and_the_limit(self, root: Path) -> None:
        path = write_nexus(root / "slow.h5", {"/entry/title": "t"})
        limits = ReadLimits(roots=(str(root),), time_limit_s=1e-9)
        with pytest.raises(
            NexusReadError, match=r"longer than 1e-09 s \(ingestion.nexus_reading.time_limit_s\)"
        ):
            read(path, "/entry/title", limits)


class TestChildReader:
    """The child-process reader gives what the in-process reader gives, errors included."""

    def test_same_values_and_errors_as_in_process(self, root: Path) -> None:
        from offline_ingestor.files.nexus_child import read_isolated

        path = write_nexus(
            root / "run.h5",
            {
                "/entry/title": "t",
                "/entry/n": np.arange(3),
                "/entry/user_a/name": "A",
                "/entry/user_b/name": "B",
            },
            {"/entry/n": {"units": "mm"}},
        )
        paths = ["/entry/title", "/entry/n", "/entry/user_*/name", "/entry/missing"]
        handle = read_isolated(path, paths, in_root(root), None, 2048)
        with open_nexus(path, in_root(root)) as direct:
            for nexus_path in paths[:3]:
                assert read_path(handle, nexus_path) == read_path(direct, nexus_path)
        with pytest.raises(NexusReadError, match="NeXus path /entry/missing not found"):
            read_path(handle, "/entry/missing")

    def test_file_level_errors_keep_their_class(self, root: Path) -> None:
        from offline_ingestor.errors import InputFileError
        from offline_ingestor.files.nexus_child import read_isolated

        (root / "empty.h5").write_bytes(b"")
        with pytest.raises(InputFileError, match="file is empty"):
            read_isolated(root / "empty.h5", ["/x"], in_root(root), None, 2048)


class TestReaderStartedEarly:
    """``start_reader``: the child a command starts before it knows what to read."""

    def test_the_read_uses_the_started_child_and_answers_the_same(self, root: Path) -> None:
        from offline_ingestor.files import nexus_child

        path = write_nexus(root / "run.h5", {"/entry/title": "t"})
        nexus_child.start_reader()
        started = nexus_child._spare
        assert started is not None
        handle = nexus_child.read_isolated(path, ["/entry/title"], in_root(root), None, 2048)
        assert started.returncode == 0  # it answered, and no second child waits
        assert nexus_child._spare is None
        with open_nexus(path, in_root(root)) as direct:
            assert read_path(handle, "/entry/title") == read_path(direct, "/entry/title")

    def test_a_started_child_still_has_the_time_limit(self, root: Path) -> None:
        from offline_ingestor.files import nexus_child

        path = write_nexus(root / "run.h5", {"/entry/title": "t"})
        nexus_child.start_reader()
        started = nexus_child._spare
        assert started is not None
        limits = ReadLimits(roots=(str(root),), time_limit_s=1e-9)
        # No grace: the parent gives up while the child still loads h5py, and must kill it.
        with (
            mock.patch.object(nexus_child, "_GRACE_S", 0.0),
            pytest.raises(NexusReadError, match=r"longer than 1e-09 s and was stopped"),
        ):
            nexus_child.read_isolated(path, ["/entry/title"], limits, None, 2048)
        assert started.returncode == -9  # killed, not left behind

    def test_an_unused_child_ends_with_the_command(self, tmp_path: Path) -> None:
        script = (
            "from offline_ingestor.files import nexus_child\n"
            "nexus_child.start_reader()\n"
            "print(nexus_child._spare.pid, flush=True)\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        pid = int(done.stdout)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the command's unused reader child outlived it"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waits for its reaper (init here): it runs nothing.
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return status != "Z"


def test_the_reader_child_holds_numpy_to_one_blas_thread() -> None:
    """numpy's OpenBLAS threads spin at import: ~90 ms of CPU per child for nothing (issue 26)."""
    from offline_ingestor.files import nexus_child

    nexus_child.start_reader()
    started = nexus_child._spare
    assert started is not None
    try:
        # Between fork and exec the child still holds this process's environment.
        proc = Path(f"/proc/{started.pid}")
        deadline = time.monotonic() + 10
        while b"nexus_child" not in (proc / "cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        environ = (proc / "environ").read_bytes().split(b"\0")
        assert b"OPENBLAS_NUM_THREADS=1" in environ
    finally:
        nexus_child._end_spare()
