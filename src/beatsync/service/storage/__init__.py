"""Where files live: a small :class:`Storage` protocol and its implementations.

:class:`S3Storage` is imported on first use, so the embedded mode never loads boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Storage, StorageUnavailable
from .factory import open_storage
from .local import LocalStorage

if TYPE_CHECKING:
    from .s3 import S3Storage

__all__ = ["LocalStorage", "S3Storage", "Storage", "StorageUnavailable", "open_storage"]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
