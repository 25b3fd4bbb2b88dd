"""Reading metadata out of NeXus/HDF5 files, and refusing files and values we cannot use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from offline_ingestor.errors import InputFileError, NexusReadError
from offline_ingestor.files import nexus
from offline_ingestor.files.nexus import NexusValue, ReadLimits, open_nexus, read_path
from offline_ingestor.testing.nexus_factory import write_nexus


def read(path: Path, nexus_path: str, limits: ReadLimits | None = None) -> list[NexusValue]:
    with open_nexus(path, limits) as handle:
        return read_path(handle, nexus_path)


def read_one(tmp_path: Path, value: Any, attrs: dict[str, Any] | None = None) -> NexusValue:
    """Write ``value`` at /entry/x and read it back."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": value}, {"/entry/x": attrs} if attrs else None)
    [found] = read(path, "/entry/x")
    return found


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(np.int64(42), 42), (np.float64(2.5), 2.5), (7, 7), (np.bool_(True), True)],
)
def test_scalar_numbers_become_python_scalars(tmp_path: Path, value: Any, expected: Any) -> None:
    """Numeric scalars come back as plain Python int/float/bool."""
    found = read_one(tmp_path, value).value
    assert found == expected
    assert type(found) is type(expected)


def test_zero_d_array_becomes_scalar(tmp_path: Path) -> None:
    """A 0-d array is read as its single value."""
    assert read_one(tmp_path, np.array(3.25)).value == 3.25


def test_one_element_array_becomes_scalar(tmp_path: Path) -> None:
    """A shape-(1,) array is read as its single value (as upstream does)."""
    found = read_one(tmp_path, np.array([11], dtype="i4")).value
    assert found == 11
    assert isinstance(found, int)


def test_one_element_string_array_becomes_string(tmp_path: Path) -> None:
    """A shape-(1,) fixed-length string array is read as one decoded string."""
    assert read_one(tmp_path, np.array([b"ODIN"])).value == "ODIN"


def test_fixed_length_bytes_string_is_decoded(tmp_path: Path) -> None:
    """A fixed-length byte string is decoded as UTF-8."""
    assert read_one(tmp_path, "Søren".encode()).value == "Søren"


def test_variable_length_string(tmp_path: Path) -> None:
    """A variable-length UTF-8 string is read as str."""
    found = read_one(tmp_path, "october 28th, lego test 1").value
    assert found == "october 28th, lego test 1"
    assert isinstance(found, str)


def test_arrays_become_lists(tmp_path: Path) -> None:
    """A multi-element array is read as a list of Python scalars."""
    found = read_one(tmp_path, np.array([1.5, 2.5, 3.5])).value
    assert found == [1.5, 2.5, 3.5]
    assert all(type(item) is float for item in found)


def test_string_arrays_become_lists_of_str(tmp_path: Path) -> None:
    """An array of byte strings is read as a list of decoded strings."""
    assert read_one(tmp_path, np.array([b"a", b"bc"])).value == ["a", "bc"]


def test_units_attribute_is_returned(tmp_path: Path) -> None:
    """The `units` attribute comes back next to the value, not folded into it."""
    assert read_one(tmp_path, 21.5, {"units": "K"}) == NexusValue(21.5, "K")


def test_bytes_units_attribute_is_decoded(tmp_path: Path) -> None:
    """A `units` attribute stored as bytes is decoded."""
    assert read_one(tmp_path, 1.0, {"units": np.bytes_(b"mm")}).unit == "mm"


def test_no_units_attribute_gives_empty_unit(tmp_path: Path) -> None:
    """Without a `units` attribute the unit is empty."""
    assert read_one(tmp_path, 1.0).unit == ""


def test_wildcard_matches_within_one_component_in_name_order(tmp_path: Path) -> None:
    """`*` in a component matches sibling names, in name order, and only that component."""
    path = write_nexus(
        tmp_path / "f.nxs",
        {
            "/entry/user_c/name": "Carla",
            "/entry/user_a/name": "Anders",
            "/entry/user_b/name": "Bo",
            "/entry/users/name": "not a user_ group",
            "/entry/xuser_d/name": "not prefixed",
            "/entry/user_e/other/name": "too deep",
        },
    )
    assert [item.value for item in read(path, "/entry/user_*/name")] == ["Anders", "Bo", "Carla"]


def test_wildcard_skips_matches_without_the_rest_of_the_path(tmp_path: Path) -> None:
    """A matching group lacking the remaining components is skipped, not an error."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/user_a/name": "A", "/entry/user_b/email": "b@x"})
    assert [item.value for item in read(path, "/entry/user_*/name")] == ["A"]


def test_path_without_leading_slash_works(tmp_path: Path) -> None:
    """`entry/title` (upstream's fallback schema spelling) reads like `/entry/title`."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/title": "t"})
    assert read(path, "entry/title")[0].value == "t"


# -- refusals --------------------------------------------------------------------------------


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    """A path that does not exist raises NexusReadError naming it."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/title": "t"})
    with pytest.raises(NexusReadError, match=r"^NeXus path /entry/sample/name not found$"):
        read(path, "/entry/sample/name")


def test_wildcard_without_match_is_missing(tmp_path: Path) -> None:
    """A wildcard matching nothing is a missing path too."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/title": "t"})
    with pytest.raises(NexusReadError, match=r"/entry/user_\*/name not found"):
        read(path, "/entry/user_*/name")


def test_group_instead_of_dataset(tmp_path: Path) -> None:
    """A path naming a group is refused, naming it."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/sample/name": "s"})
    with pytest.raises(NexusReadError, match="NeXus path /entry/sample is a group, not a dataset"):
        read(path, "/entry/sample")


def test_non_utf8_bytes_are_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 raise NexusReadError with the offending position."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": b"ok\xff\xfe"})
    with pytest.raises(NexusReadError, match=r"/entry/x: string is not valid UTF-8 \(byte 2\)"):
        read(path, "/entry/x")


def test_non_utf8_units_are_refused(tmp_path: Path) -> None:
    """A `units` attribute that is not UTF-8 is refused, naming path@units."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": 1.0}, {"/entry/x": {"units": np.bytes_(b"\xb5m")}})
    with pytest.raises(NexusReadError, match="/entry/x@units"):
        read(path, "/entry/x")


def test_large_dataset_is_refused_without_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset above MAX_ELEMENTS is refused from its shape; its data is never read."""
    # Given a dataset one element over the limit
    path = write_nexus(tmp_path / "f.nxs", {"/entry/events": np.zeros(nexus.MAX_ELEMENTS + 1, "u1")})

    # When reading it with dataset reads made to fail loudly
    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("the dataset's data was read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", forbidden)
    with pytest.raises(NexusReadError) as caught:
        read(path, "/entry/events")

    # Then the error names the path, the size and the limit
    assert f"holds {nexus.MAX_ELEMENTS + 1} elements" in str(caught.value)
    assert f"limit {nexus.MAX_ELEMENTS}" in str(caught.value)


def test_dataset_at_the_element_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset of exactly MAX_ELEMENTS elements is still metadata."""
    monkeypatch.setattr(nexus, "MAX_ELEMENTS", 4)
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": np.arange(4)})
    assert read(path, "/entry/x")[0].value == [0, 1, 2, 3]


@pytest.mark.parametrize("value", ["x" * 11, b"x" * 11])
def test_string_longer_than_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | bytes
) -> None:
    """A string above the per-value byte budget is refused (variable and fixed length)."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": value})
    with pytest.raises(NexusReadError, match="/entry/x: value of 11 bytes exceeds the limit of 10"):
        read(path, "/entry/x", ReadLimits(max_value_bytes=10))


def test_string_limit_counts_bytes_not_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six two-byte characters are 12 bytes, over a 10-byte limit."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": "øøøøøø"})
    with pytest.raises(NexusReadError, match="value of 12 bytes"):
        read(path, "/entry/x", ReadLimits(max_value_bytes=10))


def test_string_at_the_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A string of exactly the per-value budget is accepted."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/x": "x" * 10})
    assert read(path, "/entry/x", ReadLimits(max_value_bytes=10))[0].value == "x" * 10


# -- opening files ---------------------------------------------------------------------------


def open_error(path: Path) -> str:
    with pytest.raises(InputFileError) as caught, open_nexus(path):
        pass
    return str(caught.value)


def test_open_missing_file(tmp_path: Path) -> None:
    """A missing file is an InputFileError saying so."""
    assert open_error(tmp_path / "absent.nxs") == f"file not found: {tmp_path / 'absent.nxs'}"


def test_open_directory(tmp_path: Path) -> None:
    """A directory is refused as not being a data file."""
    assert open_error(tmp_path).startswith("is a directory, not a data file")


def test_open_empty_file(tmp_path: Path) -> None:
    """An empty file is refused as empty."""
    path = tmp_path / "empty.nxs"
    path.touch()
    assert open_error(path) == f"file is empty: {path}"


def test_open_small_text_file(tmp_path: Path) -> None:
    """A small non-HDF5 file is refused from its signature."""
    path = tmp_path / "notes.nxs"
    path.write_text("just some text\n")
    assert open_error(path) == f"not an HDF5 file: {path}"


def test_open_large_text_file(tmp_path: Path) -> None:
    """A larger non-HDF5 file is refused by h5py, mapped to InputFileError."""
    path = tmp_path / "notes.nxs"
    path.write_text("just some text\n" * 100)
    message = open_error(path)
    assert message.startswith(f"not a readable HDF5 file: {path}")
    assert "signature" in message


def test_open_truncated_file(tmp_path: Path) -> None:
    """A real HDF5 file cut to half its size is reported as truncated."""
    # Given a real file cut in half (as if copied while still being written)
    source = write_nexus(tmp_path / "full.nxs", {"/entry/x": np.arange(20_000.0), "/entry/t": "t"})
    data = source.read_bytes()
    truncated = tmp_path / "half.nxs"
    truncated.write_bytes(data[: len(data) // 2])

    # Then opening it names the problem and the file
    message = open_error(truncated)
    assert message.startswith(f"truncated or corrupt HDF5 file: {truncated}")


def test_open_errors_are_not_transient(tmp_path: Path) -> None:
    """Unusable files are permanent errors (retrying cannot help)."""
    from offline_ingestor.errors import is_transient

    path = tmp_path / "empty.nxs"
    path.touch()
    with pytest.raises(InputFileError) as caught, open_nexus(path):
        pass
    assert not is_transient(caught.value)


def test_handle_is_closed_after_the_block(tmp_path: Path) -> None:
    """open_nexus closes the file when the block ends."""
    path = write_nexus(tmp_path / "f.nxs", {"/entry/t": "t"})
    with open_nexus(path) as handle:
        assert handle.id.valid
    assert not handle.id.valid


# -- upstream test data ----------------------------------------------------------------------


@pytest.mark.reference
def test_reads_upstream_small_coda(reference: Path) -> None:
    """The upstream small-coda.hdf gives the values its schema expects."""
    path = reference / "scicat-ingestor/test-data/small-coda.hdf"
    with open_nexus(path) as handle:
        assert read_path(handle, "/entry/experiment_identifier")[0].value == "443503"
        assert read_path(handle, "/entry/instrument/name")[0].value == "ODIN"
        assert read_path(handle, "/entry/start_time")[0].value == "2024-10-28T09:06:41.186Z"
        users = [item.value for item in read_path(handle, "/entry/user_*/name")]
    assert users[0] == "Anders Pettersson"
    assert len(users) == 6
    assert users == sorted(users)


@pytest.mark.reference
def test_reads_upstream_small_ymir(reference: Path) -> None:
    """The upstream small-ymir.hdf reads, including a non-ASCII user name."""
    path = reference / "scicat-ingestor/test-data/small-ymir.hdf"
    with open_nexus(path) as handle:
        assert read_path(handle, "/entry/title")[0].value == "october 28th, lego test 1, cont"
        assert read_path(handle, "/entry/entry_identifier")[0].value == "11465"
        users = [item.value for item in read_path(handle, "/entry/user_*/name")]
    assert "Søren Schmidt" in users
    assert len(users) == 12
