"""The real service for end-to-end tests: ``beatsync serve`` in a subprocess on a free port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from service_process import FINISHED, ServiceProcess


class Served(NamedTuple):
    """A running service: its base URL (no trailing slash) and its data folder."""

    url: str
    data_dir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``beatsync serve`` with one worker and its own data folder, ready to answer.

    Its event streams look for news every 50 ms: a short test job's stages last less than the
    default quarter second, and the pages under test should see them go by. Audio-first runs
    wait up to ten minutes for the frames they ask for: the clients under test always answer,
    and on a busy machine reading them from a video of hundreds of megabytes can take longer
    than the default half minute, after which a late answer is refused.
    """
    env = {"BEATSYNC_EVENT_POLL_S": "0.05", "BEATSYNC_FRAMES_WAIT_S": "600"}
    service = ServiceProcess(tmp_path_factory.mktemp("served"), workers=1, env=env)
    try:
        service.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Served(url=service.url, data_dir=service.data_dir)
    finally:
        service.stop()


class ServiceClient(httpx.Client):
    """A new anonymous owner's session with a running service, and what tests do through it."""

    def __init__(self, url: str, *, timeout: float = 300) -> None:
        token = httpx.post(f"{url}/api/v1/sessions").json()["token"]
        super().__init__(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def upload(self, path: Path, *, wait_s: float = 120) -> str:
        """Upload ``path`` in one request and wait until it is probed; its upload id."""
        with path.open("rb") as handle:
            response = self.post("/api/v1/uploads", files={"file": (path.name, handle)})
        assert response.status_code == 201, response.text
        upload_id = str(response.json()["id"])
        deadline = time.monotonic() + wait_s
        while self.get(f"/api/v1/uploads/{upload_id}").json()["status"] == "receiving":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return upload_id

    def server_render(self, dance: Path, bgm: Path, out: Path) -> dict[str, Any]:
        """The pair through the server path (the video uploaded whole and rendered): the
        finished job, its video saved at ``out``."""
        body = {"dance_upload_id": self.upload(dance), "bgm_upload_id": self.upload(bgm)}
        created = self.post("/api/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        job: dict[str, Any] = created.json()
        deadline = time.monotonic() + 600
        while job["status"] not in FINISHED:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = self.get(job["links"]["self"]).json()
        assert job["status"] == "succeeded", job
        with self.stream("GET", job["result"]["files"]["video"]) as response, out.open("wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
        return job


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[ServiceClient]:
    """A session with :func:`served` for the module's tests."""
    with ServiceClient(served.url) as made:
        yield made
