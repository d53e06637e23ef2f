"""Small built cases shared by the testkit tests: each is generated once per run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from beatsync.testkit import BuiltCase, build_case, case_named


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], BuiltCase]:
    """Build a named small case on first use and hand back the same files afterwards."""
    directory: Path = tmp_path_factory.mktemp("testkit-cases")
    cache: dict[str, BuiltCase] = {}

    def get(name: str) -> BuiltCase:
        if name not in cache:
            cache[name] = build_case(case_named(name), directory)
        return cache[name]

    return get
