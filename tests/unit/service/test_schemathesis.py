"""The API against its own OpenAPI schema: generated requests (valid and not) never get a server
error, and answers fit the documented response models; linked operations are followed statefully.

schemathesis drives the ASGI app in-process with a bounded, derandomized number of examples per
operation, authenticated as one owner whose uploads and jobs exist, so the generated ids meet
real rows as well as missing ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from factories import AUDIO_MEDIA, Rows
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from beatsync.service.api.app import create_app
from beatsync.service.api.tus import OFFSET_OCTET_STREAM
from beatsync.service.config import Settings, load_settings

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 30


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        workers=1,
        min_free_disk_mb=0,
        log_json=False,
        rate_limit_per_owner=1_000_000,
        rate_limit_per_address=1_000_000,
        # Every scenario is a new owner from the one test address.
        sessions_per_address_per_minute=1_000_000,
        max_active_jobs_per_address=1_000_000,
    )


@pytest.fixture
def api_app(api_settings: Settings, dispatcher: Any) -> Iterator[Any]:
    app = create_app(api_settings, dispatcher=dispatcher)
    yield app
    shutdown_lifespans()  # schemathesis started the app's lifespan; stop it with the test


@pytest.fixture
def api_schema(api_app: Any) -> Any:
    # tus chunks are raw bytes under their own media type.
    schemathesis.serializer.alias(OFFSET_OCTET_STREAM, "application/octet-stream")
    return schemathesis.openapi.from_asgi("/openapi.json", api_app)


def new_owner(app: Any, settings: Settings) -> dict[str, str]:
    """A new owner with two ready uploads, a queued job and a succeeded one; its headers."""
    client = TestClient(app)  # the app already runs: schemathesis started its lifespan
    token = client.post("/api/v1/sessions").json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    rows = Rows(settings)
    try:
        me = client.get("/api/v1/sessions/me", headers=headers).json()["owner_id"]
        pair = {
            "dance_upload_id": rows.upload(me),
            "bgm_upload_id": rows.upload(me, media=AUDIO_MEDIA),
        }
        jobs = [
            client.post("/api/v1/jobs", json={**pair, "options": {"nudge_ms": n}}, headers=headers)
            for n in (0, 5)
        ]
        assert [j.status_code for j in jobs] == [202, 202]
        rows.succeed(jobs[1].json()["id"])
    finally:
        rows.close()
    return headers


BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_generated_requests(
    api_schema: Any, api_app: Any, api_settings: Settings, subtests: Any
) -> None:
    """Each operation, with data that fits its schema and data that does not."""
    owner = new_owner(api_app, api_settings)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with subtests.test(msg=f"{mode.value} {operation.label}"):

                @BOUNDED
                @given(case=operation.as_strategy(generation_mode=mode))
                def call(case: Any) -> None:
                    case.call_and_validate(headers=dict(owner), checks=CHECKS)

                try:
                    call()
                except Unsatisfiable:
                    # Nothing can break this operation's schema (no parameters, or strings
                    # that take anything): there is no negative request to send.
                    if mode is GenerationMode.POSITIVE:
                        raise


def test_linked_operations(api_schema: Any, api_app: Any, api_settings: Settings) -> None:
    """Sequences that feed one answer's ids into the next request (links schemathesis infers
    from the response models and ``Location`` headers). Every scenario starts from an owner of
    its own in the same state, so a scenario replays exactly."""
    machine = api_schema.as_state_machine()

    class Authenticated(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            self.owner = new_owner(api_app, api_settings)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": dict(self.owner)}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Authenticated.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
