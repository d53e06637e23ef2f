"""The service's errors: one root, every error carrying a stable code from :mod:`.codes`.

::

    ServiceError            any code of :data:`beatsync.service.codes.CODES`
    └── (engine errors)     mapped by :func:`from_engine`, same codes

The API turns a :class:`ServiceError` into an RFC 9457 problem document in exactly one place
(:mod:`beatsync.service.api.problems`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beatsync.engine.errors import BeatSyncError

from .codes import CODES

__all__ = ["ServiceError", "from_engine", "plain_errors", "plain_list"]


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


def plain_list(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as ``{loc, msg}`` only: pydantic's ``input`` (the client's data echoed
    back), ``ctx``, ``url`` and ``type`` say nothing a client needs."""
    plain = []
    for error in errors:
        message = str(error.get("msg", ""))
        # "Value error, …" is how pydantic wraps a validator's own words.
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        plain.append({"loc": [str(p) for p in error.get("loc", ())], "msg": message})
    return plain


def plain_errors(errors: Sequence[Any], *, limit: int = 5) -> str:
    """Validation errors in one line: ``where: what; …``."""
    return "; ".join(
        f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in plain_list(errors)[:limit]
    )


def from_engine(exc: BeatSyncError) -> ServiceError:
    """The engine's coded error as a service error with the same code."""
    code = exc.code if exc.code in CODES else "PROCESSING_FAILED"
    return ServiceError(code, exc.message)
