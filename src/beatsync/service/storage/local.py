"""Local-disk storage: one file per key under a root directory, written atomically."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .base import StorageUnavailable, check_key

__all__ = ["LocalStorage"]

_CHUNK = 1 << 20


class LocalStorage:
    """Files under ``root``; a key's file appears whole or not at all (rename into place)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size
        try:
            os.replace(path, target)  # same file system: atomic
        except OSError:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".put-")
            try:
                with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            path.unlink(missing_ok=True)
        return size

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        # Opened here, not in the generator, so a missing key raises at the call.
        try:
            handle = self.path(key).open("rb")
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc
        return self._chunks(handle, start, end)

    @staticmethod
    def _chunks(handle: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
        with handle:
            handle.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                chunk = handle.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def fetch(self, key: str, dest: Path) -> Path:
        source = self.path(key)
        if not source.exists():
            raise FileNotFoundError(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
        return dest

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def modified(self, key: str) -> datetime | None:
        try:
            return datetime.fromtimestamp(self.path(key).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def delete(self, keys: Sequence[str]) -> int:
        deleted = 0
        for key in keys:
            try:
                self.path(key).unlink()
            except FileNotFoundError:
                continue
            deleted += 1
        return deleted

    def keys(self, prefix: str = "", *, start: str = "") -> Iterator[str]:
        base = self.path(prefix) if prefix else self.root
        if not base.is_dir():
            return
        found: list[Path] = []
        for top in base.glob(f"{glob.escape(start)}*") if start else [base]:
            found.extend(top.rglob("*") if top.is_dir() else [top])
        for path in sorted(found):
            if path.is_file() and not path.name.startswith(".put-"):
                yield path.relative_to(self.root).as_posix()

    def names(self, prefix: str) -> Iterator[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            if not path.name.startswith((".put-", ".ready")):
                yield path.name

    def presigned_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str | None:
        return None

    def check(self) -> None:
        try:
            probe = self.root / ".ready"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {self.root}: {exc}") from exc
