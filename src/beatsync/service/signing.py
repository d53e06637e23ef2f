"""Signed, expiring URLs for results: ``?exp=<unix time>&sig=<HMAC-SHA256>``.

The signature covers the path and the expiry, so neither can be changed; such a URL works in a
``<video src>`` or ``wx.downloadFile`` without an Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ["sign", "signed_path", "verify"]


def sign(secret: str, path: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_path(secret: str, path: str, *, ttl_s: int, now: float | None = None) -> str:
    """``path`` with ``exp`` and ``sig`` query parameters valid for ``ttl_s`` seconds."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{path}?exp={expires}&sig={sign(secret, path, expires)}"


# Clocks of API replicas differ a little; a link may be signed by one and checked by another.
_CLOCK_SKEW_S = 60


def verify(
    secret: str,
    path: str,
    exp: str | None,
    sig: str | None,
    *,
    now: float | None = None,
    max_ttl_s: int | None = None,
) -> bool:
    """Whether ``sig`` signs ``path`` until ``exp``, ``exp`` has not passed and, with
    ``max_ttl_s``, lies no further ahead than a link the service hands out (a leaked key or an
    old release must not yield a link that works forever)."""
    if not exp or not sig or not exp.isascii() or not exp.isdigit():
        return False
    if not sig.isascii() or len(sig) > 64:
        return False
    expires = int(exp)
    moment = time.time() if now is None else now
    if expires < moment:
        return False
    if max_ttl_s is not None and expires > moment + max_ttl_s + _CLOCK_SKEW_S:
        return False
    return hmac.compare_digest(sign(secret, path, expires), sig)
