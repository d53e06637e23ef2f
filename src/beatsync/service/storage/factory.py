"""Build the storage the settings describe.

A module of its own so that ``base`` (the protocol) never imports its implementations, which
import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from beatsync.service.config import Settings

    from .base import Storage

__all__ = ["open_storage"]


def open_storage(settings: Settings) -> Storage:
    """The storage the settings describe (local disk by default; S3 loads boto3 on first use)."""
    if settings.storage == "s3":
        from .s3 import S3Storage

        return S3Storage(settings)
    from .local import LocalStorage

    return LocalStorage(settings.storage_root)
