"""``beatsync cleanup`` runs one sweep and prints what it did; ``beatsync serve`` and ``cleanup``
refuse settings that are not valid (the default secret in production above all) with a usage
error naming the variable, before they touch anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import seed_rows
from beatsync import cli
from beatsync.service import cleanup
from beatsync.service.cleanup import SweepReport
from beatsync.service.config import load_settings
from beatsync.service.db import Database, Upload, migrate
from beatsync.service.layout import upload_folder
from beatsync.service.storage import LocalStorage

SECRET_REFUSAL = (
    "beatsync: error [VALIDATION_ERROR]: "
    "BEATSYNC_SECRET_KEY must be a private random value of at least 32 characters "
    "in production and in the distributed mode\n"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BEATSYNC_"):
            monkeypatch.delenv(name)


def _upload(data_dir: Path, *, expired: bool, content: bytes) -> str:
    """A ready upload with its stored bytes, as the service leaves one."""
    settings = load_settings(data_dir=data_dir)
    migrate(settings.database)
    db = Database(settings.database)
    try:
        return seed_rows.upload(
            db,
            seed_rows.owner(db),
            content,
            expires_in=timedelta(hours=-1 if expired else 1),
            storage=LocalStorage(settings.storage_root),
        )
    finally:
        db.dispose()


def _rows(data_dir: Path) -> list[str]:
    db = Database(load_settings(data_dir=data_dir).database)
    try:
        with db.session() as session:
            return sorted(u.id for u in session.query(Upload))
    finally:
        db.dispose()


def test_cleanup_sweeps_once_and_says_what_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    gone = _upload(data, expired=True, content=b"old" * 100)
    kept = _upload(data, expired=False, content=b"new" * 100)

    assert cli.main(["cleanup", "--data-dir", str(data)]) == 0

    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert "expired uploads deleted: 1" in lines
    assert "stored files deleted in all: 1" in lines
    assert "abandoned resumable uploads deleted: 0" in lines
    assert lines[-1].startswith("took ")
    assert _rows(data) == [kept]
    assert not (data / "files" / upload_folder(gone)).exists()
    assert (data / "files" / upload_folder(kept) / "data").read_bytes() == b"new" * 100


def test_cleanup_reads_the_environment_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    _upload(data, expired=True, content=b"x" * 10)
    monkeypatch.setenv("BEATSYNC_DATA_DIR", str(data))

    assert cli.main(["cleanup", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["uploads_expired"] == 1
    assert report["files_deleted"] == 1
    assert (report["errors"], report["skipped"]) == ([], False)
    assert _rows(data) == []


def test_cleanup_on_a_new_data_folder_finds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cleanup", "--data-dir", str(tmp_path / "fresh"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert SweepReport(**{**report, "errors": (), "seconds": 0.0}).changed == 0
    assert (tmp_path / "fresh" / "beatsync.db").is_file()


def test_cleanup_beside_another_sweep_does_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    gone = _upload(data, expired=True, content=b"x" * 10)
    settings = load_settings(data_dir=data)
    db = Database(settings.database)
    try:
        with cleanup.sweep_lock(settings, db) as held:
            assert held
            assert cli.main(["cleanup", "--data-dir", str(data)]) == 0
    finally:
        db.dispose()
    assert capsys.readouterr().out == "another sweep is running; nothing was done\n"
    assert _rows(data) == [gone]


def test_a_failed_step_is_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_args: object, **_kwargs: object) -> SweepReport:
        return SweepReport(uploads_expired=2, errors=("orphans: StorageUnavailable: S3 is away",))

    monkeypatch.setattr(cleanup, "sweep", unavailable)

    assert cli.main(["cleanup", "--data-dir", str(tmp_path)]) == 5

    out, err = capsys.readouterr()
    assert "expired uploads deleted: 2" in out.splitlines()
    assert "error: orphans: StorageUnavailable: S3 is away" in out.splitlines()
    assert err == (
        "beatsync: error [PROCESSING_FAILED]: 1 cleanup steps failed (the next sweep tries "
        "again): orphans: StorageUnavailable: S3 is away\n"
    )


def test_cleanup_every_sweeps_on_a_schedule_until_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _upload(data, expired=True, content=b"a" * 10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATSYNC_")}
    with subprocess.Popen(
        [sys.executable, "-m", "beatsync", "cleanup", "--every", "1", "--json"],
        env={**env, "BEATSYNC_DATA_DIR": str(data)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            reports = [json.loads(process.stdout.readline())]
            assert reports[0]["uploads_expired"] == 1
            assert first not in _rows(data)
            # An upload that expires after the first sweep goes in a later one.
            second = _upload(data, expired=True, content=b"b" * 10)
            for _ in range(5):
                reports.append(json.loads(process.stdout.readline()))
                if reports[-1]["uploads_expired"]:
                    break
            assert reports[-1]["uploads_expired"] == 1
            assert second not in _rows(data)
            assert all(r["errors"] == [] for r in reports)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
        _, err = process.communicate()
    assert err == ""


@pytest.mark.parametrize("command", ["serve", "cleanup"])
def test_production_refuses_the_default_secret(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BEATSYNC_ENVIRONMENT", "production")

    assert cli.main([command, "--data-dir", str(tmp_path / "data")]) == 2

    out, err = capsys.readouterr()
    assert (out, err) == ("", SECRET_REFUSAL)
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_bad_settings_name_their_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEATSYNC_MAX_UPLOAD_BYTES", "lots")
    monkeypatch.setenv("BEATSYNC_JOB_TIME_LIMIT_S", "10")

    assert cli.main(["serve", "--data-dir", str(tmp_path), "--port", "70000"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("beatsync: error [VALIDATION_ERROR]: ")
    assert "BEATSYNC_PORT: Input should be less than or equal to 65535" in err
    assert "BEATSYNC_MAX_UPLOAD_BYTES: Input should be a valid integer" in err
    assert err.count("\n") == 1


def test_serve_in_production_with_the_default_secret_exits_before_listening(
    tmp_path: Path,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BEATSYNC_")},
        "BEATSYNC_ENVIRONMENT": "production",
        "BEATSYNC_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "beatsync", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", SECRET_REFUSAL)
    assert not (tmp_path / "data").exists()


def test_production_starts_with_a_private_secret(tmp_path: Path) -> None:
    from beatsync.cli.serve import service_settings

    settings = service_settings(
        environment="production", secret_key="a-long-private-value-" + "x" * 20, data_dir=tmp_path
    )
    assert settings.environment == "production"


def test_help_lists_cleanup(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cleanup", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: beatsync cleanup" in out
    assert "--json" in out
