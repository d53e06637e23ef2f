"""The real service for end-to-end tests: ``beatsync serve`` in a subprocess on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from service_process import ServiceProcess


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
