"""Settings: environment variables, derived paths and the checks that refuse bad configurations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from beatsync.service import docs
from beatsync.service.config import DEFAULT_SECRET, Settings, load_settings, weak_secret
from beatsync.service.db import job_database

DOCS = Path(__file__).parents[3] / "docs"
KEY_1 = "operator-key-one-0123456789"
KEY_2 = "operator-key-two-0123456789"


def test_environment_variables_configure_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BEATSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BEATSYNC_WORKERS", "3")
    monkeypatch.setenv("BEATSYNC_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("BEATSYNC_API_KEYS", f" {KEY_1}, ,{KEY_2} ")
    settings = load_settings()
    assert settings.workers == 3
    assert settings.max_upload_bytes == 1234
    assert settings.operator_keys == (KEY_1, KEY_2)
    assert settings.database == f"sqlite:///{tmp_path.resolve() / 'beatsync.db'}"
    assert settings.storage_root == tmp_path.resolve() / "files"
    assert settings.spool_root == tmp_path.resolve() / "spool"


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEATSYNC_PORT", "9000")
    assert load_settings(port=9001).port == 9001


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="BEATSYNC_SECRET_KEY"):
        load_settings(environment="production")
    strong = "Prod-" + "0123456789abcdef" * 2
    assert load_settings(environment="production", secret_key=strong).environment == "production"
    with pytest.raises(ValidationError, match="BEATSYNC_SECRET_KEY"):
        load_settings(environment="production", secret_key="x" * 40)


def test_hard_time_limit_must_not_be_below_the_soft_one() -> None:
    with pytest.raises(ValidationError, match="job_time_limit_s"):
        load_settings(job_soft_time_limit_s=100, job_time_limit_s=50)


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEATSYNC_WORKERS", "0")
    with pytest.raises(ValidationError, match="workers"):
        load_settings()


@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_generated_reference_pages_are_up_to_date(name: str) -> None:
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == docs.PAGES[name](), f"run: python -m beatsync.service.docs docs ({name})"


def test_every_setting_is_documented() -> None:
    page = docs.configuration_page()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"`BEATSYNC_{name.upper()}`" in page


def test_without_a_configured_secret_a_random_one_is_kept_in_the_data_folder(
    tmp_path: Path,
) -> None:
    first = load_settings(data_dir=tmp_path / "a").secret_key.get_secret_value()
    again = load_settings(data_dir=tmp_path / "a").secret_key.get_secret_value()
    elsewhere = load_settings(data_dir=tmp_path / "b").secret_key.get_secret_value()
    kept = tmp_path / "a" / "secret_key"
    assert first == again == kept.read_text().strip()
    assert elsewhere != first
    assert first != DEFAULT_SECRET
    assert not weak_secret(first)
    assert kept.stat().st_mode & 0o777 == 0o600


def test_a_configured_secret_wins_over_the_kept_one(tmp_path: Path) -> None:
    load_settings(data_dir=tmp_path)
    chosen = "k" + "0123456789abcdef" * 3
    assert load_settings(data_dir=tmp_path, secret_key=chosen).secret_key.get_secret_value() == (
        chosen
    )


@pytest.mark.parametrize("secret", ["", DEFAULT_SECRET, "short-but-private", "a" * 64])
@pytest.mark.parametrize("mode", [{"queue": "celery"}, {"storage": "s3"}])
def test_the_distributed_mode_refuses_a_missing_or_weak_secret(
    tmp_path: Path, secret: str, mode: dict[str, str]
) -> None:
    with pytest.raises(ValidationError, match="BEATSYNC_SECRET_KEY"):
        load_settings(data_dir=tmp_path, secret_key=secret, **mode)
    strong = load_settings(data_dir=tmp_path, secret_key="Zq8" + "0123456789abcdef" * 2, **mode)
    assert strong.distributed
    assert not (tmp_path / "secret_key").exists()


def test_operator_keys_must_be_long() -> None:
    with pytest.raises(ValidationError, match="BEATSYNC_API_KEYS"):
        load_settings(api_keys="op-key-1")
    assert load_settings(api_keys="o" * 23 + "p").operator_keys == ("o" * 23 + "p",)


def test_database_pools_are_sized_by_the_settings(
    make_settings: Callable[..., Settings], make_client: Callable[..., TestClient]
) -> None:
    settings = make_settings(db_pool_size=3, db_max_overflow=1)
    assert (load_settings().db_pool_size, load_settings().db_max_overflow) == (10, 10)
    pool = make_client(settings).app.state.context.db.engine.pool  # type: ignore[attr-defined]
    assert (pool.size(), pool._max_overflow) == (3, 1)
    # A process that runs one job needs its run's connection and its heartbeat's.
    job_pool = job_database(settings.database).engine.pool
    assert (job_pool.size(), job_pool._max_overflow) == (2, 1)  # type: ignore[attr-defined]
