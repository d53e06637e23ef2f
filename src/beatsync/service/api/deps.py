"""FastAPI dependencies as ``Annotated`` aliases: the context, a database session, the owner.

Routers declare what they need (``owner: OwnerId``, ``session: DbSession``) and call service
functions; only this module knows how the pieces are found.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from beatsync.service.auth import authenticate
from beatsync.service.codes import Locale, negotiate_locale
from beatsync.service.config import Settings
from beatsync.service.errors import ServiceError

from .context import ServiceContext

__all__ = [
    "ClientAddress",
    "Context",
    "DbSession",
    "LocaleDep",
    "OwnerId",
    "SettingsDep",
    "bearer_token",
    "resolve_owner",
]


# Dependencies without I/O are ``async``: FastAPI would run a plain ``def`` in its thread pool,
# a hop that costs more than the work.
async def _context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


Context = Annotated[ServiceContext, Depends(_context)]


async def _settings(context: Context) -> Settings:
    return context.settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def _session(context: Context) -> Iterator[Session]:
    with context.db.session() as session:
        yield session


# Committed before the response leaves ("function" scope): with the default "request" scope
# the commit ran after the client had the answer, so a token or job it had just been given
# could be unknown to its next request.
DbSession = Annotated[Session, Depends(_session, scope="function")]


def bearer_token(authorization: str | None, query_token: str | None = None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else ``query_token``.

    Only the progress streams pass a query token (``EventSource`` cannot set headers): a token
    in a URL ends up in logs and histories, so no other route reads one.
    """
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return query_token or None


async def resolve_owner(context: ServiceContext, token: str) -> str | None:
    """The owner of ``token`` (from this process's cache, else the database), or None."""
    owner_id = context.tokens.get(token)
    if owner_id is None:
        owner_id = await run_in_threadpool(_authenticate, context, token)
        if owner_id is not None:
            context.tokens.put(token, owner_id)
    return owner_id


async def _owner(request: Request, context: Context) -> str:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise ServiceError("UNAUTHORIZED", "send Authorization: Bearer <token>")
    owner_id = await resolve_owner(context, token)
    if owner_id is None:
        raise ServiceError("UNAUTHORIZED", "the token is not known")
    request.state.owner_id = owner_id
    return owner_id


def _authenticate(context: ServiceContext, token: str) -> str | None:
    with context.db.session() as session:
        return authenticate(
            session,
            token,
            context.settings.operator_keys,
            lifetime=timedelta(hours=context.settings.token_ttl_h),
        )


OwnerId = Annotated[str, Depends(_owner)]


async def _client_address(request: Request) -> str | None:
    # uvicorn has already put the forwarded address here when the peer is a trusted proxy.
    return request.client.host if request.client else None


ClientAddress = Annotated[str | None, Depends(_client_address)]


async def _locale(request: Request, settings: SettingsDep) -> Locale:
    return negotiate_locale(request.headers.get("accept-language"), settings.default_locale)


LocaleDep = Annotated[Locale, Depends(_locale)]
