"""Sessions and tokens: anonymous owners, operator keys, hashed storage; health checks."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from beatsync.service.auth import token_hash
from beatsync.service.config import Settings
from beatsync.service.db import Database, Owner, Token


def test_a_session_creates_an_owner_whose_token_works(client: TestClient) -> None:
    created = client.post("/api/v1/sessions")
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith("bst_")
    assert len(body["token"]) > 40
    me = client.get("/api/v1/sessions/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json() == {"owner_id": body["owner_id"]}
    # A token in a URL is read only by the progress streams (see test_tickets).
    by_query = client.get(f"/api/v1/sessions/me?access_token={body['token']}")
    assert by_query.status_code == 401


def test_two_sessions_are_two_owners(client: TestClient) -> None:
    first = client.post("/api/v1/sessions").json()
    second = client.post("/api/v1/sessions").json()
    assert first["owner_id"] != second["owner_id"]
    assert first["token"] != second["token"]


def test_tokens_are_stored_only_as_hashes(client: TestClient, settings: Settings) -> None:
    token = client.post("/api/v1/sessions").json()["token"]
    db = Database(settings.database)
    with db.session() as session:
        stored = session.scalars(select(Token.hash)).all()
    db.dispose()
    assert token_hash(token) in stored
    assert all(token not in value for value in stored)


def test_bad_credentials_are_refused(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 2000},
    ):
        response = client.get("/api/v1/sessions/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "UNAUTHORIZED"


def test_operator_keys_authenticate_as_a_stable_operator(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(settings.model_copy(update={"api_keys": "op-key-1,op-key-2"}))
    one = client.get("/api/v1/sessions/me", headers={"Authorization": "Bearer op-key-1"}).json()
    again = client.get("/api/v1/sessions/me", headers={"Authorization": "Bearer op-key-1"}).json()
    two = client.get("/api/v1/sessions/me", headers={"Authorization": "Bearer op-key-2"}).json()
    assert one == again
    assert one["owner_id"] != two["owner_id"]
    db = Database(settings.database)
    with db.session() as session:
        owner = session.get(Owner, one["owner_id"])
        assert owner is not None
        assert owner.kind == "operator"
    db.dispose()


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"status": "ok"}
    ready = client.get("/api/health/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) == {"database", "queue", "workers", "storage", "disk", "memory"}
    assert all(check["ok"] for check in checks.values())


def test_readiness_fails_when_disk_is_short(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(settings.model_copy(update={"min_free_disk_mb": 10**12}))
    ready = client.get("/api/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["disk"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_openapi_lists_the_routes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v1/sessions" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_cross_origin_calls_only_from_the_allowlist(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(settings.model_copy(update={"cors_origins": "https://app.example"}))
    preflight = client.options(
        "/api/v1/tus",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,upload-offset",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    allowed = client.post("/api/v1/sessions", headers={"Origin": "https://app.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "upload-offset" in allowed.headers["access-control-expose-headers"].lower()
    other = client.post("/api/v1/sessions", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
