"""Where files live: a small :class:`Storage` protocol and its implementations."""

from .base import Storage, StorageUnavailable, open_storage
from .local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StorageUnavailable", "open_storage"]
