"""The pauses of a job waiting for storage: doubling, capped, adding up to the window."""

from __future__ import annotations

from pathlib import Path

import pytest

from beatsync.service.config import load_settings
from beatsync.service.jobs.backoff import storage_pauses


def test_pauses_double_up_to_the_cap_and_fill_the_window() -> None:
    assert storage_pauses(180.0) == (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 28.5)
    assert storage_pauses(3.0, first_s=1.0, cap_s=1.5) == (1.0, 1.5, 0.5)
    assert storage_pauses(0.0) == ()


def test_the_default_window_outlasts_a_restart_of_the_store(tmp_path: Path) -> None:
    window = load_settings(data_dir=tmp_path).storage_retry_s
    # Minutes, not the few seconds a store's restart or failover takes.
    assert 120.0 <= sum(storage_pauses(window)) <= 300.0


def test_pauses_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        storage_pauses(10.0, first_s=0.0)
