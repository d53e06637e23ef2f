"""``POST /api/v1/sessions``: an anonymous client token, the owner of what it uploads."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from beatsync.service.auth import issue_token

from .deps import DbSession, OwnerId

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])


class SessionOut(BaseModel):
    token: str
    owner_id: str


class WhoAmI(BaseModel):
    owner_id: str


@router.post("", status_code=201, response_model=SessionOut)
def create_session(session: DbSession) -> SessionOut:
    """A new anonymous owner. Keep the token: it is shown once and is the only key to its files."""
    issued = issue_token(session)
    return SessionOut(token=issued.token, owner_id=issued.owner_id)


@router.get("/me", response_model=WhoAmI)
def whoami(owner: OwnerId) -> WhoAmI:
    """The owner the bearer token belongs to."""
    return WhoAmI(owner_id=owner)
