"""part_path and publish: a finished part file takes the output's name in one atomic step."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

import pytest

from beatsync.engine.output import outfile
from beatsync.engine.output.outfile import part_path, publish


def _old_output(folder: Path) -> Path:
    out = folder / "out.mp4"
    out.write_bytes(b"old")
    return out


def _part(out: Path, content: bytes) -> Path:
    part = part_path(out)
    part.write_bytes(content)
    return part


def test_part_names_are_hidden_fresh_and_beside_the_output(tmp_path: Path) -> None:
    out = tmp_path / "class.mp4"
    names = {part_path(out) for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path
        assert name.name.startswith(".class.mp4.")
        assert name.name.endswith(".part")
        assert not name.exists()


def test_a_new_output_takes_the_part_files_place(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    part = _part(out, b"new")
    publish(part, out)
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_an_existing_output_is_replaced_and_its_old_file_deleted(tmp_path: Path) -> None:
    out = _old_output(tmp_path)
    with out.open("rb") as reader:  # a player that has the old file open keeps reading it
        part = _part(out, b"new")
        publish(part, out)
        assert os.fstat(reader.fileno()).st_nlink == 0  # no name points at it any more
        assert reader.read() == b"old"
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.skipif(sys.platform != "linux", reason="names are exchanged on Linux only")
def test_on_linux_an_existing_output_is_exchanged_not_renamed_over(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    renameat2 = outfile._renameat2()
    assert renameat2 is not None  # glibc 2.28 and later
    if not outfile._swap(a, b):
        pytest.skip(f"{tmp_path}'s file system cannot exchange names")
    assert (a.read_bytes(), b.read_bytes()) == (b"B", b"A")


def test_part_paths_are_absolute_so_ffmpeg_reads_no_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    part = part_path(Path("take:2.mp4"))
    assert part.is_absolute()
    assert part.parent == tmp_path


def _failing_exchange(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """``renameat2`` fails with ``code``, as on a file system or kernel that says so."""

    def fails(*_: object) -> int:
        ctypes.set_errno(code)
        return -1

    monkeypatch.setattr(outfile, "_renameat2", lambda: fails)


def test_when_the_file_system_cannot_exchange_it_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_exchange(monkeypatch, errno.EINVAL)
    out = _old_output(tmp_path)
    publish(_part(out, b"new"), out)
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_other_exchange_errors_are_raised_and_nothing_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_exchange(monkeypatch, errno.EACCES)
    out = _old_output(tmp_path)
    part = _part(out, b"new")
    with pytest.raises(PermissionError):
        publish(part, out)
    assert (out.read_bytes(), part.read_bytes()) == (b"old", b"new")


def test_a_previous_output_that_cannot_be_deleted_is_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    out = _old_output(tmp_path)
    part = _part(out, b"new")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == part:
            raise PermissionError(errno.EACCES, "denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    publish(part, out)
    assert out.read_bytes() == b"new"
    if not part.exists():
        pytest.skip(f"{tmp_path}'s file system renames instead of exchanging names")
    assert part.read_bytes() == b"old"  # left behind, and said so
    assert "could not delete the previous output" in caplog.text


def test_only_regular_files_are_exchanged(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.write_bytes(b"A")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert not outfile._swap(a, folder)
    assert not outfile._swap(a, tmp_path / "missing")
    link = tmp_path / "link"
    link.symlink_to(folder)
    assert not outfile._swap(a, link)


def test_a_folder_in_the_way_is_an_error_and_the_part_file_stays(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.mkdir()
    part = _part(out, b"new")
    with pytest.raises(IsADirectoryError):
        publish(part, out)
    assert out.is_dir()
    assert part.read_bytes() == b"new"  # the caller removes it


def test_a_symlink_at_the_output_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.mp4"
    target.write_bytes(b"keep")
    out = tmp_path / "out.mp4"
    out.symlink_to(target)
    publish(_part(out, b"new"), out)
    assert not out.is_symlink()
    assert out.read_bytes() == b"new"
    assert target.read_bytes() == b"keep"


def test_without_renameat2_it_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outfile, "_renameat2", lambda: None)
    out = _old_output(tmp_path)
    publish(_part(out, b"new"), out)
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
