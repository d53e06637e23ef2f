"""Stream tickets: short-lived credentials that open one job's progress streams.

``EventSource`` cannot send an ``Authorization`` header, and a URL is written to logs, browser
histories and proxies: a lifetime token has no place there. A client that holds the token asks
``POST /api/v1/jobs/{id}/ticket`` and opens ``/events?ticket=…`` or ``/ws?ticket=…`` with what it
gets: an HMAC of the job, the owner and the expiry under the service's secret key, valid for
``stream_ticket_ttl_s`` (a minute) and for that job only. Nothing is stored, so any API replica
sharing the key accepts it.

Format: ``st1.<expiry, unix seconds>.<owner id>.<signature, base64url>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

__all__ = ["issue_ticket", "verify_ticket"]

_PREFIX = "st1"
_SHAPE = re.compile(r"st1\.([0-9]{1,12})\.([A-Za-z0-9_-]{1,40})\.([A-Za-z0-9_-]{43})")
_CLOCK_SKEW_S = 60


def _sign(secret: str, job_id: str, owner_id: str, expires: int) -> str:
    message = f"stream-ticket\n{job_id}\n{owner_id}\n{expires}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def issue_ticket(
    secret: str, job_id: str, owner_id: str, *, ttl_s: int, now: float | None = None
) -> tuple[str, int]:
    """A ticket for ``owner_id`` to follow ``job_id`` for ``ttl_s`` seconds; its expiry."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{_PREFIX}.{expires}.{owner_id}.{_sign(secret, job_id, owner_id, expires)}", expires


def verify_ticket(
    secret: str, ticket: str, job_id: str, *, max_ttl_s: int, now: float | None = None
) -> str | None:
    """The owner ``ticket`` was issued to, if it is for ``job_id``, signed with ``secret`` and
    neither expired nor valid further ahead than ``max_ttl_s``; else None."""
    found = _SHAPE.fullmatch(ticket or "")
    if found is None:
        return None
    expires, owner_id, signature = int(found[1]), found[2], found[3]
    moment = time.time() if now is None else now
    if not moment <= expires <= moment + max_ttl_s + _CLOCK_SKEW_S:
        return None
    if not hmac.compare_digest(_sign(secret, job_id, owner_id, expires), signature):
        return None
    return owner_id
