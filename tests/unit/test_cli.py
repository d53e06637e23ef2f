"""The ``beatsync`` command: parsing, validation, exit codes, output and progress.

The engine is replaced by a fake ``sync`` here; runs on real media live in ``tests/e2e``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

from beatsync import __version__, cli
from beatsync.cli import summary_line
from beatsync.engine import errors, pipeline
from beatsync.engine.alignment.align import Alignment, Candidate, Mapping, Piece, WindowTrack
from beatsync.engine.alignment.span import MusicSpan
from beatsync.engine.cut.trim import Cut, EdgeEvidence
from beatsync.engine.media.probe import AudioInfo, MediaInfo, VideoInfo
from beatsync.engine.output.render import RenderedOutput
from beatsync.engine.output.report import report_dict
from beatsync.engine.pipeline import StageTiming, SyncOptions, SyncResult

FOUND = Mapping(7.125, 1.0 - 18.26e-6)


def _result(out: Path) -> SyncResult:
    times = np.linspace(0.0, 20.0, 5)
    video = VideoInfo(
        0, "h264", 320, 240, 30.0, False, 0, "yuv420p", 1, 1, 1, 1, None,
        Fraction(1, 15360), 0.0, 20.0, False,
    )  # fmt: skip
    audio = AudioInfo(1, "aac", 48000, 2, None, Fraction(1, 48000), 0.0, 20.0)
    return SyncResult(
        dance=MediaInfo("dance.mp4", "mov,mp4,m4a,3gp,3g2,mj2", 10, 20.0, 0.0, video, audio),
        bgm=MediaInfo("bgm.m4a", "mov,mp4,m4a,3gp,3g2,mj2", 10, 90.0, 0.0, None, audio),
        alignment=Alignment(
            mapping=FOUND,
            confidence=0.934,
            candidates=(Candidate(FOUND, 0.934, 0.9),),
            windows=WindowTrack(times, np.full(5, 7.125), np.ones(5), np.ones(5, dtype=bool)),
            music=MusicSpan(1.5, 18.0),
            activity=(times, np.ones(5)),
            envelopes=(times, np.ones(5), np.ones(5)),
        ),
        mapping=FOUND,
        cut=Cut(1.5, 18.0, "music", "music"),
        output=RenderedOutput(
            str(out), 1000, 16.5, 1.5, 18.0, "h264", True, 320, 240, 0, 495, "aac", 48000, 2
        ),
        timings=(StageTiming("probe", 0.01), StageTiming("render", 0.2)),
    )


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def __init__(self, encoding: str = "utf-8") -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    def isatty(self) -> bool:
        return True


class _Calls:
    """A stand-in for ``pipeline.sync`` that records its arguments and runs ``effect``."""

    def __init__(self, effect: Callable[..., None] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.effect = effect

    def __call__(self, dance: Path, bgm: Path, out: Path, **kwargs: Any) -> SyncResult:
        self.calls.append({"dance": dance, "bgm": bgm, "out": out, **kwargs})
        if self.effect is not None:
            self.effect(dance, bgm, out, **kwargs)
        return _result(out)


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    dance, bgm = tmp_path / "dance.mp4", tmp_path / "bgm.m4a"
    dance.write_bytes(b"dance")
    bgm.write_bytes(b"bgm")
    return dance, bgm


@pytest.fixture
def fake_sync(monkeypatch: pytest.MonkeyPatch) -> _Calls:
    fake = _Calls()
    monkeypatch.setattr(pipeline, "sync", fake, raising=False)
    return fake


def _sync_args(media: tuple[Path, Path], *extra: str) -> list[str]:
    dance, bgm = media
    return ["sync", str(dance), str(bgm), "-o", str(dance.parent / "out.mp4"), *extra]


# --- parsing and validation ---------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"beatsync {__version__}\n"


def test_no_command_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "sync" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(
    media: tuple[Path, Path], fake_sync: _Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_sync_args(media, "--bogus")) == 2
    err = capsys.readouterr().err
    assert "beatsync: error [VALIDATION_ERROR]: unrecognized arguments: --bogus\n" in err
    assert err.startswith("usage: beatsync ")
    assert fake_sync.calls == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start", "5", "--end", "3"], "--start (5 s) must be before --end (3 s)"),
        (["--start", "4", "--end", "4"], "--start (4 s) must be before --end (4 s)"),
        (["--start", "-1"], "--start must not be negative (got -1)"),
        (["--mix-live", "6"], "--mix-live must be 0 dB or below (got 6)"),
        (["--offset", "nan"], "argument --offset: not a finite number: 'nan'"),
        (["--nudge-ms", "ten"], "argument --nudge-ms: not a number: 'ten'"),
        (["--max-height", "8"], "argument --max-height: at least 16 pixels (got 8)"),
    ],
)
def test_bad_options_are_usage_errors(
    media: tuple[Path, Path],
    fake_sync: _Calls,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert cli.main(_sync_args(media, *extra)) == 2
    assert f"beatsync: error [VALIDATION_ERROR]: {message}" in capsys.readouterr().err
    assert fake_sync.calls == []


def test_missing_input_is_file_not_found(
    tmp_path: Path, fake_sync: _Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    bgm = tmp_path / "bgm.m4a"
    bgm.write_bytes(b"x")
    missing = tmp_path / "nope.mp4"

    code = cli.main(["sync", str(missing), str(bgm), "-o", str(tmp_path / "o.mp4")])

    assert code == 3
    err = capsys.readouterr().err
    assert err == f"beatsync: error [FILE_NOT_FOUND]: no such file ({missing})\n"
    assert fake_sync.calls == []


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (lambda d: ["-o", str(d / "missing" / "o.mp4")], "the folder to write into does not exist"),
        (lambda d: ["-o", str(d / "dance.mp4")], "refusing to overwrite an input"),
        (lambda d: ["-o", str(d)], "a folder is in the way"),
        (
            lambda d: ["-o", str(d / "o.mp4"), "--plot", str(d / "o.mp4")],
            "two outputs would be written to one file",
        ),
    ],
)
def test_bad_output_paths_are_usage_errors(
    media: tuple[Path, Path],
    fake_sync: _Calls,
    capsys: pytest.CaptureFixture[str],
    target: Callable[[Path], list[str]],
    message: str,
) -> None:
    dance, bgm = media
    assert cli.main(["sync", str(dance), str(bgm), *target(dance.parent)]) == 2
    assert f"beatsync: error [VALIDATION_ERROR]: {message}" in capsys.readouterr().err
    assert fake_sync.calls == []


def test_options_reach_the_engine(media: tuple[Path, Path], fake_sync: _Calls) -> None:
    dance, bgm = media
    folder = dance.parent
    argv = _sync_args(
        media,
        "--report", str(folder / "r.json"), "--plot", str(folder / "p.png"),
        "--poster", str(folder / "poster.jpg"), "--offset", "-2.5", "--start", "1",
        "--end", "9.5", "--max-height", "720", "--nudge-ms", "-12", "--mix-live", "-18", "-q",
    )  # fmt: skip

    assert cli.main(argv) == 0

    (call,) = fake_sync.calls
    assert (call["dance"], call["bgm"], call["out"]) == (dance, bgm, folder / "out.mp4")
    assert call["report"] == folder / "r.json"
    assert call["plot"] == folder / "p.png"
    assert call["poster"] == folder / "poster.jpg"
    assert call["on_progress"] is None
    options: SyncOptions = call["options"]
    assert (options.offset, options.start, options.end, options.trim) == (-2.5, 1.0, 9.5, True)
    assert options.nudge_ms == -12.0
    assert options.mapping is None
    assert (options.render.reencode, options.render.max_height) == (True, 720)
    assert options.render.live_mix_db == -18.0


def test_defaults_reach_the_engine(media: tuple[Path, Path], fake_sync: _Calls) -> None:
    assert cli.main(_sync_args(media, "--no-trim", "-q")) == 0

    (call,) = fake_sync.calls
    assert (call["report"], call["plot"], call["poster"]) == (None, None, None)
    options: SyncOptions = call["options"]
    assert (options.offset, options.start, options.end, options.trim) == (None, None, None, False)
    assert options.nudge_ms == 0.0
    assert (options.render.reencode, options.render.max_height) == (False, None)
    assert options.render.live_mix_db is None


# --- output -------------------------------------------------------------------------------------


def test_summary_line_on_stdout(
    media: tuple[Path, Path], fake_sync: _Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_sync_args(media)) == 0

    out, err = capsys.readouterr()
    assert err == ""
    expected = (
        rf"wrote {re.escape(str(media[0].parent / 'out.mp4'))} in \d+\.\d s: offset \+7\.125 s, "
        r"drift -18\.3 ppm, confidence 0\.93, cut 1\.50-18\.00 s \(music/music\)"
    )
    assert re.fullmatch(expected + "\n", out)


def test_summary_line_says_how_sure_each_cut_edge_is(tmp_path: Path) -> None:
    result = _result(tmp_path / "out.mp4")
    doubtful = Cut(1.5, 18.0, "music-uncertain", "reference", EdgeEvidence(0.62, 7.25),
                   EdgeEvidence(1.0, 0.4))  # fmt: skip
    line = cli.sync.summary_line(dataclasses.replace(result, cut=doubtful), 2.0)
    assert line.endswith(
        "cut 1.50-18.00 s (music-uncertain 62% sure, 7.2 s too quiet to hear kept/reference)"
    )


def test_report_to_stdout_is_the_json_report(
    media: tuple[Path, Path], fake_sync: _Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_sync_args(media, "--report", "-")) == 0

    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report == report_dict(_result(media[0].parent / "out.mp4"))
    assert report["mapping"] == {
        "offset_s": 7.125, "scale": 0.99998174, "drift_ppm": -18.3, "pitch_kept": False
    }  # fmt: skip
    assert report["alignment"]["confidence"] == 0.934
    assert fake_sync.calls[0]["report"] is None
    assert err.startswith("wrote ")  # the summary moves out of the JSON's way


def test_quiet_prints_nothing(
    media: tuple[Path, Path], fake_sync: _Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_sync_args(media, "-q")) == 0
    assert capsys.readouterr() == ("", "")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "exit_code"),
    [
        (errors.OptionsError("--end is past the video's end (20 s)"), "VALIDATION_ERROR", 2),
        (errors.MediaNotFoundError("no such file", path="x.mp4"), "FILE_NOT_FOUND", 3),
        (errors.InvalidFormatError("not a media file", path="x.mp4"), "INVALID_FORMAT", 3),
        (errors.NoAudioTrackError("no audio track", path="x.mp4"), "NO_AUDIO_TRACK", 3),
        (errors.NoVideoTrackError("no video track", path="x.mp4"), "NO_VIDEO_TRACK", 3),
        (errors.DurationTooLongError("longer than 10 min"), "DURATION_TOO_LONG", 3),
        (errors.InputError("unusable"), "INVALID_FORMAT", 3),
        (errors.AlignmentError("not confident"), "MUSIC_MISMATCH", 4),
        (errors.MusicMismatchError("different songs"), "MUSIC_MISMATCH", 4),
        (errors.ProcessingError("encoder failed\nbadly"), "PROCESSING_FAILED", 5),
        (errors.BeatSyncError("something"), "PROCESSING_FAILED", 5),
    ],
)
def test_engine_errors_map_to_exit_codes(
    media: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: errors.BeatSyncError,
    code: str,
    exit_code: int,
) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> SyncResult:
        raise error

    monkeypatch.setattr(pipeline, "sync", fail, raising=False)

    assert cli.main(_sync_args(media)) == exit_code
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"beatsync: error [{code}]: {' '.join(str(error).split())}\n"


def test_unexpected_errors_are_internal_without_a_trace(
    media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BEATSYNC_DEBUG", raising=False)
    monkeypatch.setattr(pipeline, "sync", _Calls(_raise(ZeroDivisionError("oops"))), raising=False)

    assert cli.main(_sync_args(media)) == 5
    err = capsys.readouterr().err
    assert err == "beatsync: error [PROCESSING_FAILED]: unexpected ZeroDivisionError: oops\n"


def test_debug_prints_the_trace(
    media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BEATSYNC_DEBUG", "1")
    monkeypatch.setattr(pipeline, "sync", _Calls(_raise(ZeroDivisionError("oops"))), raising=False)

    assert cli.main(_sync_args(media)) == 5
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.endswith("beatsync: error [PROCESSING_FAILED]: unexpected ZeroDivisionError: oops\n")


def test_interrupt_exits_130(
    media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pipeline, "sync", _Calls(_raise(KeyboardInterrupt())), raising=False)
    assert cli.main(_sync_args(media)) == 130
    assert capsys.readouterr().err == "beatsync: interrupted\n"


class _EndedError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _ending(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """os._exit raising instead, and a record of what was flushed before it."""
    flushed: list[str] = []

    def end(code: int) -> NoReturn:
        raise _EndedError(code)

    monkeypatch.setattr(cli.os, "_exit", end)
    monkeypatch.setattr(cli.logging, "shutdown", lambda: flushed.append("logging"))
    return flushed


def test_the_console_script_ends_a_sync_at_once_with_its_output_flushed(
    media: tuple[Path, Path],
    fake_sync: _Calls,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flushed = _ending(monkeypatch)
    with pytest.raises(_EndedError) as ended:
        cli.main(_sync_args(media), exit_when_done=True)
    assert ended.value.code == 0
    assert flushed == ["logging"]
    assert capsys.readouterr().out.startswith("wrote ")


def test_a_failed_sync_ends_with_its_exit_code(
    media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _ending(monkeypatch)
    monkeypatch.setattr(
        pipeline,
        "sync",
        _Calls(_raise(errors.MusicMismatchError("different songs"))),
        raising=False,
    )
    with pytest.raises(_EndedError) as ended:
        cli.main(_sync_args(media), exit_when_done=True)
    assert ended.value.code == 4
    assert "MUSIC_MISMATCH" in capsys.readouterr().err


def test_output_lost_at_the_end_fails_the_run(
    media: tuple[Path, Path],
    fake_sync: _Calls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ending(monkeypatch)

    class Closed(io.StringIO):
        def flush(self) -> None:
            raise BrokenPipeError("the reader went away")

    monkeypatch.setattr(cli.sys, "stdout", Closed())
    with pytest.raises(_EndedError) as ended:
        cli.main(_sync_args(media), exit_when_done=True)
    assert ended.value.code == 120


def test_other_commands_return_normally(monkeypatch: pytest.MonkeyPatch) -> None:
    _ending(monkeypatch)
    assert cli.main(["--version"], exit_when_done=True) == 0
    assert cli.main(["sync"], exit_when_done=True) == 2  # a usage error, found while parsing


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.OptionsError("x"), 2),
        (errors.NoVideoTrackError("x"), 3),
        (errors.MusicMismatchError("x"), 4),
        (errors.ProcessingError("x"), 5),
        (OSError("disk full"), 5),
    ],
)
def test_exit_code_table(error: BaseException, code: int) -> None:
    assert cli.exit_code(error) == code


def test_failed_run_leaves_no_new_files(
    media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = media[0].parent
    report, plot = folder / "r.json", folder / "p.png"
    report.write_text("the previous run's report")

    def half_done(_d: Path, _b: Path, out: Path, **kwargs: Any) -> None:
        out.write_bytes(b"video")
        kwargs["plot"].write_bytes(b"png")
        raise errors.ProcessingError("the poster failed")

    monkeypatch.setattr(pipeline, "sync", _Calls(half_done), raising=False)
    argv = _sync_args(media, "--report", str(report), "--plot", str(plot), "-q")

    assert cli.main(argv) == 5
    assert sorted(p.name for p in folder.iterdir()) == ["bgm.m4a", "dance.mp4", "r.json"]
    assert report.read_text() == "the previous run's report"


def _raise(error: BaseException) -> Callable[..., None]:
    def effect(*_args: Any, **_kwargs: Any) -> None:
        raise error

    return effect


# --- progress -----------------------------------------------------------------------------------


def test_progress_bar_redraws_one_line_in_place() -> None:
    stream = _Terminal()
    bar = cli.ProgressBar(stream, width=10, columns=80)

    bar("probe", 0.0, "")
    bar("align", 0.5, "fine lags")
    bar("align", 0.5, "fine lags")  # unchanged: not redrawn
    bar("render", 1.0, "")
    bar.close()

    first = "probe  ░░░░░░░░░░   0%"
    second = "align  █████░░░░░  50%  fine lags"
    third = "render ██████████ 100%"
    assert stream.getvalue() == (
        f"\r{first}\r{second}\r{third}{' ' * (len(second) - len(third))}\r{' ' * len(third)}\r"
    )


def test_progress_bar_fits_the_terminal_and_falls_back_to_ascii() -> None:
    stream = _Terminal(encoding="ascii")
    bar = cli.ProgressBar(stream, width=4, columns=20)

    bar("decode", 0.25, "a very long message that cannot fit")

    assert stream.getvalue() == "\r" + "decode #---  25%  a"


def test_sync_shows_progress_on_a_terminal(
    media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def progress(*_args: Any, on_progress: pipeline.ProgressCallback, **_kwargs: Any) -> None:
        for stage, fraction in (("probe", 0.05), ("align", 0.4), ("render", 0.9), ("done", 1.0)):
            on_progress(stage, fraction, "")

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(pipeline, "sync", _Calls(progress), raising=False)

    assert cli.main(_sync_args(media, "--report", "-")) == 0

    shown = terminal.getvalue()
    frames = [f for f in shown.split("\r") if f.strip()]
    assert [f.split()[0] for f in frames[:4]] == ["probe", "align", "render", "done"]
    assert "100%" in frames[3]
    assert frames[4].startswith("wrote ")  # the bar was wiped before the summary


def test_no_progress_when_not_a_terminal(
    media: tuple[Path, Path], fake_sync: _Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_sync_args(media)) == 0
    assert fake_sync.calls[0]["on_progress"] is None
    assert "\r" not in capsys.readouterr().err


def test_help_starts_without_loading_the_engine() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from beatsync.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['sync', '--help']) == 0\n"
        "heavy = ('numpy', 'av', 'scipy', 'matplotlib', 'beatsync.engine.pipeline')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("preset", [None, "2"])
def test_the_command_keeps_openblas_to_one_thread_unless_told_otherwise(
    preset: str | None,
) -> None:
    # OpenBLAS runs at most one thread per core.
    expected = 1 if preset is None else min(int(preset), os.cpu_count() or 1)
    probe = (
        "import json\n"
        "from beatsync import cli\n"
        "def report(**_):\n"
        "    import numpy, threadpoolctl\n"
        "    pools = [p for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
        "    print(json.dumps([p['num_threads'] for p in pools]))\n"
        "    return 0\n"
        "cli.main = report\n"
        "cli.run()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    threads = json.loads(done.stdout)
    assert threads
    assert set(threads) == {expected}


def test_summary_line_of_an_edit_lists_its_pieces(tmp_path: Path) -> None:
    result = _result(tmp_path / "out.mp4")
    later = Mapping(FOUND.offset + 21.5, FOUND.scale)
    edit = dataclasses.replace(result, pieces=(Piece(1.5, 9.25, FOUND), Piece(9.25, 18.0, later)))
    assert summary_line(edit, 2.04) == (
        f"wrote {tmp_path / 'out.mp4'} in 2.0 s: 2 pieces (1.50-9.25 s at +7.125 s; "
        "9.25-18.00 s at +28.625 s), drift -18.3 ppm, confidence 0.93, "
        "cut 1.50-18.00 s (music/music)"
    )
