"""``/api/v1/sessions``: an anonymous client token (the owner of what it uploads), who a token
belongs to, and revoking the token in use."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from beatsync.service.auth import is_operator_key, issue_owner_token, issue_token, revoke_token
from beatsync.service.db.models import utcnow
from beatsync.service.errors import ServiceError
from beatsync.service.wechat import WeChat, owner_id_for

from .deps import Context, DbSession, OwnerId, bearer_token

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])


class SessionOut(BaseModel):
    token: str
    owner_id: str
    expires_at: str = Field(description="ISO 8601, UTC: the token stops working then.")


class WhoAmI(BaseModel):
    owner_id: str


class WeChatLogin(BaseModel):
    code: str = Field(min_length=1, max_length=256, description="What `wx.login` gave.")


def _session_out(token: str, owner_id: str, context: Context) -> SessionOut:
    expires = utcnow() + timedelta(hours=context.settings.token_ttl_h)
    return SessionOut(
        token=token, owner_id=owner_id, expires_at=expires.isoformat().replace("+00:00", "Z")
    )


@router.post("", status_code=201, response_model=SessionOut)
def create_session(session: DbSession, context: Context) -> SessionOut:
    """A new anonymous owner. Keep the token: it is shown once and is the only key to its files.
    Send it only in the ``Authorization`` header: URLs end up in logs."""
    issued = issue_token(session)
    return _session_out(issued.token, issued.owner_id, context)


@router.post("/wechat", status_code=201, response_model=SessionOut)
def create_wechat_session(body: WeChatLogin, session: DbSession, context: Context) -> SessionOut:
    """A token of the WeChat user whose `wx.login` gave `code` (WeChat's code2Session finds
    the openid). Every login of that user gets a token of the same owner, on any phone, so
    their jobs follow them."""
    openid = WeChat(context.settings).code2session(body.code)
    issued = issue_owner_token(session, owner_id_for(openid), "wechat")
    return _session_out(issued.token, issued.owner_id, context)


@router.delete("/current", status_code=204)
def revoke_session(
    request: Request, owner: OwnerId, session: DbSession, context: Context
) -> Response:
    """Revoke the bearer token of this request (sign out); it never works again."""
    token = bearer_token(request.headers.get("authorization"))
    assert token is not None  # OwnerId found one
    if is_operator_key(token, context.settings.operator_keys):
        raise ServiceError(
            "VALIDATION_ERROR", "an operator key is revoked by removing it from the settings"
        )
    revoke_token(session, token)
    context.tokens.forget(token)
    return Response(status_code=204)


@router.get("/me", response_model=WhoAmI)
def whoami(owner: OwnerId) -> WhoAmI:
    """The owner the bearer token belongs to."""
    return WhoAmI(owner_id=owner)
