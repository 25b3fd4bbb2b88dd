"""A data file swapped for a symlink is refused as a symlink (issue 28, item 4).

The end-to-end test matches "refused" only, which the device/inode check also says; here a
symlink to the very same file (same device and inode) must still be refused, for being one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offline_ingestor.errors import InputFileError
from offline_ingestor.files.identity import FileIdentity, open_no_follow, snapshot

SYMLINK_REFUSAL = "is now a symbolic link"


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.hdf"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    return path


def test_a_symlink_to_the_selected_file_is_refused_as_a_symlink(data_file: Path, tmp_path: Path) -> None:
    """Same device and inode as select-schema recorded: only O_NOFOLLOW can refuse it."""
    expected = snapshot(data_file)
    link = tmp_path / "link.hdf"
    link.symlink_to(data_file)
    with pytest.raises(InputFileError, match=SYMLINK_REFUSAL) as caught, open_no_follow(link, expected):
        pass
    assert str(link) in str(caught.value)


def test_a_symlink_is_refused_without_an_expected_identity(data_file: Path, tmp_path: Path) -> None:
    """snapshot(), select-schema's first look, refuses a symlink too."""
    link = tmp_path / "link.hdf"
    link.symlink_to(data_file)
    with pytest.raises(InputFileError, match=SYMLINK_REFUSAL):
        snapshot(link)


def test_the_file_itself_opens_and_is_checked(data_file: Path) -> None:
    """The regular file is opened read-only, in blocking mode, and matches its identity."""
    expected = snapshot(data_file)
    with open_no_follow(data_file, expected) as fd:
        assert FileIdentity.of(os.fstat(fd)).same_file(expected)
        assert os.get_blocking(fd) and os.read(fd, 4) == b"\x89HDF"
