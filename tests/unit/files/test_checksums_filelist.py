"""File checksums (streamed, cached) and the origdatablock file list."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from offline_ingestor.config import FileHandlingOptions
from offline_ingestor.files.checksums import BUFFER_BYTES, clear_cache, file_checksum
from offline_ingestor.files.filelist import build_file_list, hash_file_path

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """A 3.5 MiB file of varied bytes (several read buffers, a partial last one)."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * BUFFER_BYTES + BUFFER_BYTES // 2))
    return path


def options(**overrides: object) -> FileHandlingOptions:
    return FileHandlingOptions(**overrides)  # type: ignore[arg-type]


# -- checksums -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["blake2b", "sha256", "md5"])
def test_checksum_equals_hashlib(big_file: Path, algorithm: str) -> None:
    """The streamed digest equals hashlib's digest of the whole file."""
    expected = hashlib.new(algorithm, big_file.read_bytes()).hexdigest()
    assert file_checksum(big_file, algorithm) == expected  # type: ignore[arg-type]


#: The BLAKE3 team's test vectors (github.com/BLAKE3-team/BLAKE3, test_vectors.json: input
#: bytes i % 251), 256-bit outputs.
BLAKE3_VECTORS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
}


@pytest.mark.parametrize("length", sorted(BLAKE3_VECTORS))
def test_blake3_matches_the_official_test_vectors(tmp_path: Path, length: int) -> None:
    path = tmp_path / "vector"
    path.write_bytes(bytes(i % 251 for i in range(length)))
    assert file_checksum(path, "blake3") == BLAKE3_VECTORS[length]


def test_blake3_equals_the_reference_library_single_threaded(big_file: Path) -> None:
    """Our multi-threaded, buffered digest equals the reference library's of the whole file."""
    blake3 = pytest.importorskip("blake3")
    expected = blake3.blake3(big_file.read_bytes(), max_threads=1).hexdigest()
    assert file_checksum(big_file, "blake3") == expected


def test_the_file_list_carries_the_blake3_digest(data_file: Path) -> None:
    blake3 = pytest.importorskip("blake3")
    entries = build_file_list(
        data_file,
        options(file_hash_algorithm="blake3", save_file_hash=False),
        source_folder=str(data_file.parent),
    )
    assert entries[0]["chk"] == blake3.blake3(data_file.read_bytes()).hexdigest()


def test_blake2b_is_the_default_with_128_hex_chars(big_file: Path) -> None:
    """The default is blake2b with its 64-byte digest (upstream's `.b2b` content)."""
    digest = file_checksum(big_file)
    assert len(digest) == 128
    assert digest == hashlib.blake2b(big_file.read_bytes()).hexdigest()


def test_progress_reports_every_byte(big_file: Path) -> None:
    """The progress callback receives chunk sizes summing to the file size."""
    chunks: list[int] = []
    file_checksum(big_file, "sha256", chunks.append)
    assert sum(chunks) == big_file.stat().st_size
    assert max(chunks) <= BUFFER_BYTES
    assert len(chunks) == 4


def test_second_call_is_served_from_cache(big_file: Path) -> None:
    """Hashing the same unchanged file again does not read it again."""
    first: list[int] = []
    second: list[int] = []
    digest = file_checksum(big_file, "blake2b", first.append)
    assert file_checksum(big_file, "blake2b", second.append) == digest
    assert first
    assert second == []


def test_cache_is_per_algorithm(big_file: Path) -> None:
    """A cached blake2b digest is not returned for sha256."""
    file_checksum(big_file, "blake2b")
    calls: list[int] = []
    expected = hashlib.sha256(big_file.read_bytes()).hexdigest()
    assert file_checksum(big_file, "sha256", calls.append) == expected
    assert calls


def test_touching_mtime_invalidates_the_cache(big_file: Path) -> None:
    """A new mtime (same size) makes the file be hashed again."""
    file_checksum(big_file, "md5")
    info = big_file.stat()
    os.utime(big_file, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    calls: list[int] = []
    file_checksum(big_file, "md5", calls.append)
    assert calls


def test_changed_content_gives_new_digest(tmp_path: Path) -> None:
    """Rewriting a file with other bytes (and another mtime) gives the new digest."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    old = file_checksum(path, "sha256")
    path.write_bytes(b"two!")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000_000))
    assert file_checksum(path, "sha256") != old
    assert file_checksum(path, "sha256") == hashlib.sha256(b"two!").hexdigest()


def test_clear_cache_forgets(big_file: Path) -> None:
    """After clear_cache the file is read again."""
    file_checksum(big_file, "md5")
    clear_cache()
    calls: list[int] = []
    file_checksum(big_file, "md5", calls.append)
    assert calls


def test_empty_file_checksum(tmp_path: Path) -> None:
    """An empty file hashes to the digest of no bytes."""
    path = tmp_path / "empty"
    path.touch()
    assert file_checksum(path, "sha256") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("algorithm", ["crc32", "sha1", "BLAKE2B", ""])
def test_unsupported_algorithm_is_refused(tmp_path: Path, algorithm: str) -> None:
    """Algorithms other than blake2b/sha256/md5 are refused with a ValueError naming them."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=f"unsupported checksum algorithm '{algorithm}'"):
        file_checksum(path, algorithm)  # type: ignore[arg-type]


# -- file list -------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "raw" / "2024" / "run1.hdf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89HDF fake content")
    return path


def test_entry_types_match_scicat_dto(data_file: Path) -> None:
    """uid/gid/perm are strings, size an int and time ISO with `.000Z`."""
    [entry, _] = build_file_list(data_file, options(), source_folder="")
    info = data_file.stat()
    assert entry["size"] == info.st_size
    assert isinstance(entry["size"], int)
    assert entry["uid"] == str(info.st_uid)
    assert entry["gid"] == str(info.st_gid)
    assert entry["perm"] == oct(info.st_mode)
    assert stat.S_ISREG(int(entry["perm"], 8))
    assert ISO_Z.match(entry["time"])


def test_time_is_the_mtime_in_utc(data_file: Path) -> None:
    """`time` is the file's mtime in UTC."""
    os.utime(data_file, (0, 1_700_000_000))
    [entry] = build_file_list(data_file, options(save_file_hash=False), source_folder="")
    assert entry["time"] == "2023-11-14T22:13:20.000Z"


def test_chk_present_when_compute_file_hash(data_file: Path) -> None:
    """With compute_file_hash the data file's entry carries its checksum."""
    [entry] = build_file_list(
        data_file, options(save_file_hash=False, file_hash_algorithm="sha256"), source_folder=""
    )
    assert entry["chk"] == hashlib.sha256(data_file.read_bytes()).hexdigest()


def test_no_chk_and_no_hash_file_without_compute_file_hash(data_file: Path) -> None:
    """Without compute_file_hash there is no chk and no hash file, even if save_file_hash."""
    entries = build_file_list(data_file, options(compute_file_hash=False), source_folder="")
    assert len(entries) == 1
    assert "chk" not in entries[0]
    assert not (data_file.parent.parent / "ingestor").exists()


def test_no_stats_without_compute_file_stats(data_file: Path) -> None:
    """Without compute_file_stats the uid/gid/perm keys are left out."""
    [entry] = build_file_list(
        data_file, options(compute_file_stats=False, save_file_hash=False), source_folder=""
    )
    assert not {"uid", "gid", "perm"} & set(entry)
    assert entry["size"] == data_file.stat().st_size


def test_relative_paths_against_source_folder(data_file: Path, tmp_path: Path) -> None:
    """With file_path_type relative, paths under source_folder become relative."""
    [entry] = build_file_list(data_file, options(save_file_hash=False), source_folder=str(tmp_path / "raw"))
    assert entry["path"] == "2024/run1.hdf"


def test_absolute_path_kept_when_outside_source_folder(data_file: Path, tmp_path: Path) -> None:
    """A file outside source_folder keeps its absolute path instead of failing."""
    [entry] = build_file_list(
        data_file, options(save_file_hash=False), source_folder=str(tmp_path / "elsewhere")
    )
    assert entry["path"] == data_file.as_posix()


def test_absolute_path_type_ignores_source_folder(data_file: Path, tmp_path: Path) -> None:
    """With file_path_type absolute, paths stay absolute even under source_folder."""
    [entry] = build_file_list(
        data_file,
        options(save_file_hash=False, file_path_type="absolute"),
        source_folder=str(tmp_path / "raw"),
    )
    assert entry["path"] == data_file.as_posix()


def test_hash_file_path_relative_to_data_file_folder(data_file: Path) -> None:
    """A relative ingestor_files_directory is taken from the data file's folder, stem kept."""
    target = hash_file_path(data_file, options())
    assert target == data_file.parent.parent / "ingestor" / "run1.b2b"


def test_hash_file_path_absolute_directory(data_file: Path, tmp_path: Path) -> None:
    """An absolute ingestor_files_directory is used as given, with the configured extension."""
    target = hash_file_path(
        data_file, options(ingestor_files_directory=str(tmp_path / "hashes"), hash_file_extension="sha")
    )
    assert target == tmp_path / "hashes" / "run1.sha"


def test_save_file_hash_writes_and_lists_the_hash_file(data_file: Path) -> None:
    """save_file_hash writes `<stem>.b2b` (creating the folder) and lists it without chk."""
    # Given the default ../ingestor directory, which does not exist yet
    expected = (data_file.parent.parent / "ingestor" / "run1.b2b").resolve()
    assert not expected.parent.exists()

    # When the list is built
    entries = build_file_list(data_file, options(), source_folder="")

    # Then the hash file holds the data file's checksum and is listed after it, unhashed
    assert len(entries) == 2
    data_entry, hash_entry = entries
    assert expected.read_text() == data_entry["chk"]
    assert Path(hash_entry["path"]).resolve() == expected
    assert "chk" not in hash_entry
    assert hash_entry["size"] == len(data_entry["chk"])
    assert isinstance(hash_entry["uid"], str)


def test_hash_file_under_source_folder_is_relative(data_file: Path, tmp_path: Path) -> None:
    """A hash file inside source_folder gets a relative path too."""
    entries = build_file_list(
        data_file, options(ingestor_files_directory="ingestor"), source_folder=str(tmp_path / "raw")
    )
    assert [entry["path"] for entry in entries] == ["2024/run1.hdf", "2024/ingestor/run1.b2b"]


def test_unwritable_hash_directory_is_an_input_error(data_file: Path, tmp_path: Path) -> None:
    """A hash directory that cannot be created is an InputFileError naming the target."""
    from offline_ingestor.errors import InputFileError

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(InputFileError, match="cannot write hash file"):
        build_file_list(data_file, options(ingestor_files_directory=str(blocker / "sub")), source_folder="")


def test_extra_files_are_listed(data_file: Path, tmp_path: Path) -> None:
    """Extra files get their own entries and hash files; `../ingestor` is folded, no `..`."""
    extra = data_file.parent / "run1.message.json"
    extra.write_text("{}")
    entries = build_file_list(
        data_file,
        options(file_hash_algorithm="md5"),
        source_folder=str(tmp_path / "raw"),
        extra_files=[extra],
    )
    paths = [entry["path"] for entry in entries]
    assert paths == [
        "2024/run1.hdf",
        "ingestor/run1.b2b",
        "2024/run1.message.json",
        "ingestor/run1.message.b2b",
    ]
    assert entries[2]["chk"] == hashlib.md5(b"{}").hexdigest()


def test_progress_only_reported_for_the_data_file(data_file: Path) -> None:
    """The progress callback counts the data file's bytes, not extra files'."""
    extra = data_file.parent / "extra.txt"
    extra.write_bytes(b"x" * 1000)
    seen: list[int] = []
    build_file_list(
        data_file, options(save_file_hash=False), source_folder="", extra_files=[extra], progress=seen.append
    )
    assert sum(seen) == data_file.stat().st_size


def test_missing_data_file_is_an_input_error(tmp_path: Path) -> None:
    """A data file that vanished is an InputFileError naming it."""
    from offline_ingestor.errors import InputFileError

    with pytest.raises(InputFileError, match=r"file not found: .*gone\.hdf"):
        build_file_list(tmp_path / "gone.hdf", options(), source_folder="")
