"""The service's errors: one root, every error carrying a stable code from :mod:`.codes`.

::

    ServiceError            any code of :data:`beatsync.service.codes.CODES`
    └── (engine errors)     mapped by :func:`from_engine`, same codes

The API turns a :class:`ServiceError` into an RFC 9457 problem document in exactly one place
(:mod:`beatsync.service.api.problems`).
"""

from __future__ import annotations

from typing import Any

from beatsync.engine.errors import BeatSyncError

from .codes import CODES

__all__ = ["ServiceError", "from_engine"]


class ServiceError(Exception):
    """A refusal with a stable ``code``; ``detail`` says exactly what went wrong (English)."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.status = status or CODES[code].status
        self.headers = headers or {}
        self.extra = extra or {}


def from_engine(exc: BeatSyncError) -> ServiceError:
    """The engine's coded error as a service error with the same code."""
    code = exc.code if exc.code in CODES else "PROCESSING_FAILED"
    return ServiceError(code, exc.message)
