"""Local-disk storage: atomic puts, ranged reads, links, deletes and key safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beatsync.service.storage import LocalStorage, Storage


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files")


def _file(folder: Path, data: bytes) -> Path:
    path = folder / f"src-{len(data)}"
    path.write_bytes(data)
    return path


def test_it_implements_the_protocol(storage: LocalStorage) -> None:
    assert isinstance(storage, Storage)


def test_put_then_read_whole_and_ranges(storage: LocalStorage, tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 123)
    assert storage.put_file("uploads/upl_1/data", _file(tmp_path, data)) == len(data)
    assert b"".join(storage.read("uploads/upl_1/data")) == data
    for start, end in [(0, 1), (5, 100), (1 << 20, 2 * (1 << 20) + 7), (len(data) - 3, None)]:
        assert b"".join(storage.read("uploads/upl_1/data", start, end)) == data[start:end]
    assert storage.size("uploads/upl_1/data") == len(data)
    assert storage.size("uploads/upl_2/data") is None


def test_put_moves_the_source_and_replaces_whole(storage: LocalStorage, tmp_path: Path) -> None:
    source = _file(tmp_path, b"first")
    storage.put_file("jobs/job_1/report.json", source)
    assert not source.exists()
    storage.put_file("jobs/job_1/report.json", _file(tmp_path, b"second version"))
    assert b"".join(storage.read("jobs/job_1/report.json")) == b"second version"


def test_fetch_gives_a_local_copy(storage: LocalStorage, tmp_path: Path) -> None:
    storage.put_file("uploads/upl_1/data", _file(tmp_path, b"media bytes"))
    copy = storage.fetch("uploads/upl_1/data", tmp_path / "work" / "dance")
    assert copy.read_bytes() == b"media bytes"
    with pytest.raises(FileNotFoundError):
        storage.fetch("uploads/upl_9/data", tmp_path / "work" / "x")
    with pytest.raises(FileNotFoundError):
        storage.read("uploads/upl_9/data")


def test_keys_and_delete_prefix(storage: LocalStorage, tmp_path: Path) -> None:
    for key in ("jobs/job_1/output.mp4", "jobs/job_1/plot.png", "jobs/job_2/output.mp4"):
        storage.put_file(key, _file(tmp_path, key.encode()))
    assert list(storage.keys("jobs/job_1")) == ["jobs/job_1/output.mp4", "jobs/job_1/plot.png"]
    assert storage.delete_prefix("jobs/job_1") == 2
    assert list(storage.keys()) == ["jobs/job_2/output.mp4"]
    assert storage.delete_prefix("jobs/job_1") == 0
    assert storage.delete(["jobs/job_2/output.mp4", "jobs/job_2/gone.png"]) == 1
    assert list(storage.keys()) == []


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "/abs/path", "a/../../b", "a//b", "", "a/b c", "uploads/\x00"]
)
def test_unsafe_keys_are_refused(storage: LocalStorage, key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        storage.size(key)


def test_check_and_presigned(storage: LocalStorage) -> None:
    storage.check()
    assert storage.presigned_url("jobs/job_1/output.mp4", expires_s=60) is None
