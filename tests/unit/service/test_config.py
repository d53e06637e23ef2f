"""Settings: environment variables, derived paths and the checks that refuse bad configurations."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from beatsync.service import docs
from beatsync.service.config import Settings, load_settings

DOCS = Path(__file__).parents[3] / "docs"


def test_environment_variables_configure_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BEATSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BEATSYNC_WORKERS", "3")
    monkeypatch.setenv("BEATSYNC_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("BEATSYNC_API_KEYS", " k1, ,k2 ")
    settings = load_settings()
    assert settings.workers == 3
    assert settings.max_upload_bytes == 1234
    assert settings.operator_keys == ("k1", "k2")
    assert settings.database == f"sqlite:///{tmp_path.resolve() / 'beatsync.db'}"
    assert settings.storage_root == tmp_path.resolve() / "files"
    assert settings.spool_root == tmp_path.resolve() / "spool"


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEATSYNC_PORT", "9000")
    assert load_settings(port=9001).port == 9001


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="BEATSYNC_SECRET_KEY"):
        load_settings(environment="production")
    assert load_settings(environment="production", secret_key="x" * 40).environment == "production"


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
