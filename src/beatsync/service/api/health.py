"""``/api/health`` (the process answers) and ``/api/health/ready`` (it can do its work)."""

from __future__ import annotations

import shutil
from typing import Any

import psutil
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from beatsync.service.jobs.liveness import STALE_S

from .deps import Context

__all__ = ["router"]

router = APIRouter(prefix="/api/health", tags=["health"])


@router.get("")
def alive() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready")
def ready(context: Context) -> JSONResponse:
    """Database, queue, workers, storage, free disk and memory; 503 when any is not ready."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, fn: Any) -> None:
        try:
            extra = fn()
            checks[name] = {"ok": True, **(extra or {})}
        except Exception as exc:
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    def database() -> None:
        with context.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def disk() -> dict[str, Any]:
        free_mb = shutil.disk_usage(context.settings.spool_root).free // (1024 * 1024)
        if free_mb < context.settings.min_free_disk_mb:
            raise RuntimeError(f"{free_mb} MB free, below {context.settings.min_free_disk_mb} MB")
        return {"free_mb": free_mb}

    def memory() -> dict[str, Any]:
        available_mb = psutil.virtual_memory().available // (1024 * 1024)
        if available_mb < 256:
            raise RuntimeError(f"only {available_mb} MB of memory available")
        return {"available_mb": available_mb}

    check("database", database)

    def workers() -> dict[str, Any]:
        seen = context.dispatcher.workers()
        if seen.alive == 0:
            raise RuntimeError(f"no worker has sent a heartbeat in the last {STALE_S:g} s")
        return seen.as_dict()

    check("queue", context.dispatcher.check)
    check("workers", workers)
    check("storage", context.storage.check)
    check("disk", disk)
    check("memory", memory)
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )
