"""Owners and their bearer tokens: anonymous client tokens and operator API keys.

A token is shown to its client once and stored only as its SHA-256, so a copy of the database
gives no one access. A token lives ``token_ttl_h`` from its issue and can be revoked earlier
(:func:`revoke_token`, ``DELETE /api/v1/sessions/current``): its row is deleted. Operator keys
come from the settings and get a stable owner each; they end when the settings drop them.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .db.models import Owner, Token, new_id, utcnow

__all__ = [
    "IssuedToken",
    "TokenCache",
    "authenticate",
    "is_operator_key",
    "issue_owner_token",
    "issue_token",
    "revoke_token",
    "token_hash",
]

_LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class IssuedToken:
    __slots__ = ("owner_id", "token")

    def __init__(self, token: str, owner_id: str) -> None:
        self.token = token
        self.owner_id = owner_id


def issue_token(session: Session) -> IssuedToken:
    """A new anonymous owner and its token (``bst_…``)."""
    owner = Owner(id=new_id("own"), kind="anonymous")
    token = "bst_" + secrets.token_urlsafe(32)
    session.add(owner)
    session.flush()
    session.add(Token(hash=token_hash(token), owner_id=owner.id))
    return IssuedToken(token, owner.id)


def issue_owner_token(session: Session, owner_id: str, kind: str) -> IssuedToken:
    """A new token of the owner ``owner_id`` (created as ``kind`` the first time)."""
    if session.get(Owner, owner_id) is None:
        session.add(Owner(id=owner_id, kind=kind))
        session.flush()
    token = "bst_" + secrets.token_urlsafe(32)
    session.add(Token(hash=token_hash(token), owner_id=owner_id))
    return IssuedToken(token, owner_id)


def is_operator_key(token: str, operator_keys: tuple[str, ...]) -> bool:
    digest = token_hash(token)
    return any(secrets.compare_digest(token_hash(key), digest) for key in operator_keys)


def authenticate(
    session: Session,
    token: str,
    operator_keys: tuple[str, ...],
    *,
    lifetime: timedelta | None = None,
) -> str | None:
    """The owner id of ``token``, or None when it is unknown, revoked or (with ``lifetime``)
    issued longer ago than that."""
    if not token or len(token) > 512:
        return None
    digest = token_hash(token)
    for key in operator_keys:
        if secrets.compare_digest(token_hash(key), digest):
            owner_id = "op_" + digest[:24]
            if session.get(Owner, owner_id) is None:
                session.add(Owner(id=owner_id, kind="operator"))
                session.flush()
            return owner_id
    found = session.execute(
        select(Token.owner_id, Token.last_used_at, Token.created_at).where(Token.hash == digest)
    ).first()
    if found is None:
        return None
    owner, last_used, created = found
    now = utcnow()
    if lifetime is not None and created + lifetime <= now:
        return None
    # Recorded to the minute, not on every request: a status poll must not be a write.
    if last_used is None or now - last_used > _LAST_USED_RESOLUTION:
        session.execute(update(Token).where(Token.hash == digest).values(last_used_at=now))
    return str(owner)


def revoke_token(session: Session, token: str) -> bool:
    """Delete ``token``'s row; whether there was one."""
    gone = session.execute(delete(Token).where(Token.hash == token_hash(token)))
    return bool(getattr(gone, "rowcount", 0))


class TokenCache:
    """Recently seen tokens and their owners, for ``ttl_s`` seconds, in this process.

    A status poll then costs no token query. A token revoked through this process is forgotten
    at once; one revoked through another replica, or expiring, works here for at most ``ttl_s``
    more. Unknown tokens are not cached, so a token issued by another replica is found at once.
    """

    def __init__(self, *, ttl_s: float = 60.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._owners: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> str | None:
        digest = token_hash(token)
        with self._lock:
            found = self._owners.get(digest)
            if found is None:
                return None
            owner, until = found
            if until < time.monotonic():
                del self._owners[digest]
                return None
            return owner

    def forget(self, token: str) -> None:
        with self._lock:
            self._owners.pop(token_hash(token), None)

    def put(self, token: str, owner: str) -> None:
        digest = token_hash(token)
        with self._lock:
            if len(self._owners) >= self.size:
                self._owners.clear()  # rare; refilled by the next requests
            self._owners[digest] = (owner, time.monotonic() + self.ttl_s)
