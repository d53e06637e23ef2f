"""The storage protocol: keys are ``/``-separated relative names chosen by the service.

Keys are never built from user strings (ids and fixed names only), which
:func:`check_key` enforces for every implementation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Storage", "StorageUnavailable", "check_key"]

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


class StorageUnavailable(Exception):  # noqa: N818 (named after its code)
    """The storage backend cannot be reached or refused the operation (``STORAGE_UNAVAILABLE``)."""


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


@runtime_checkable
class Storage(Protocol):
    """What the service needs from a file store."""

    def put_file(self, key: str, path: Path) -> int:
        """Store the local file ``path`` (which may be moved away) under ``key``; its size."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of ``key`` (to its end when ``end`` is None), in chunks."""

    def fetch(self, key: str, dest: Path) -> Path:
        """A local file with the content of ``key`` at ``dest`` (a link where possible)."""

    def size(self, key: str) -> int | None:
        """The size of ``key`` in bytes, or None when it does not exist."""

    def modified(self, key: str) -> datetime | None:
        """When ``key`` was last written (aware UTC), or None when it does not exist."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix/``; how many were deleted."""

    def delete(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` (a missing one is no error); how many (a store that cannot tell which
        were there counts them all)."""

    def keys(self, prefix: str = "", *, start: str = "") -> Iterator[str]:
        """Every key, or those under ``prefix/``; only those whose name there begins with
        ``start`` when it is given (``keys("uploads", start="upl_")``)."""

    def names(self, prefix: str) -> Iterator[str]:
        """The names one level under ``prefix/`` (folders and files), without listing what
        the folders hold."""

    def presigned_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str | None:
        """A URL a client can fetch ``key`` from directly, or None to serve it through the API."""

    def check(self) -> None:
        """Raise :class:`StorageUnavailable` when the backend cannot be used."""
