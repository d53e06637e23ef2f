"""Generated media shared by the engine's unit tests (built once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beatsync.testkit import BuiltCase, build_case, case_named


@pytest.fixture(scope="session")
def kit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kit")


@pytest.fixture(scope="session")
def small_case(kit_dir: Path):  # type: ignore[no-untyped-def]
    """``small_case(name)`` builds (once) and returns one of the kit's small named cases."""
    built: dict[str, BuiltCase] = {}

    def get(name: str) -> BuiltCase:
        if name not in built:
            built[name] = build_case(case_named(name), kit_dir)
        return built[name]

    return get
