"""ForkedCall: a call in a forked child, its result or its error back in the caller."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from beatsync.engine.errors import NoAudioTrackError, ProcessingError
from beatsync.engine.media import forked
from beatsync.engine.media.decode import Audio
from beatsync.engine.media.forked import ForkedCall

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forking is used on Linux only")


def _audio(n: int, seed: int) -> tuple[int, Audio]:
    samples = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return os.getpid(), Audio(samples, 16_000, 1.25)


def _fail(path: str) -> None:
    raise NoAudioTrackError("the file has no audio track", path=path)


def _unpicklable() -> object:
    return threading.Lock()


def _vanish() -> None:
    os._exit(7)


def test_the_result_comes_back_from_another_process_byte_for_byte() -> None:
    with ForkedCall(_audio, 3_000_001, 5) as call:
        pid, audio = call.result()
    _, expected = _audio(3_000_001, 5)
    assert pid != os.getpid()
    assert audio.rate == 16_000
    assert audio.start == 1.25
    assert audio.samples.dtype == np.float32
    np.testing.assert_array_equal(audio.samples, expected.samples)


def test_the_childs_error_is_raised_in_the_caller_with_its_code_and_path() -> None:
    with ForkedCall(_fail, "/media/song.m4a") as call, pytest.raises(NoAudioTrackError) as raised:
        call.result()
    assert raised.value.code == "NO_AUDIO_TRACK"
    assert raised.value.path == "/media/song.m4a"
    assert "no audio track" in str(raised.value)


def test_a_result_that_cannot_be_sent_becomes_a_processing_error() -> None:
    with ForkedCall(_unpicklable) as call, pytest.raises(ProcessingError, match="cannot be sent"):
        call.result()


def test_a_child_that_dies_without_answering_is_a_processing_error() -> None:
    with ForkedCall(_vanish) as call, pytest.raises(ProcessingError, match="ended early"):
        call.result()


def test_closing_without_the_result_kills_the_child() -> None:
    call = ForkedCall(time.sleep, 60)
    pid = call._pid
    assert pid is not None
    began = time.monotonic()
    call.close()
    assert time.monotonic() - began < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no such child


def test_off_the_main_thread_the_call_runs_in_the_callers_process() -> None:
    out: list[int] = []

    def work() -> None:
        with ForkedCall(_audio, 10, 1) as call:
            pid, _ = call.result()
        out.append(pid)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert out == [os.getpid()]


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A job process killed outright (a cancel, a time limit) leaves no decoder behind."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import os, signal, sys, time\n"
        "from beatsync.engine.media.forked import ForkedCall\n"
        "call = ForkedCall(time.sleep, 60)\n"
        f"open({str(pid_file)!r}, 'w').write(str(call._pid))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -9
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def _gone(pid: int) -> bool:
    """No such process, or one killed and waiting to be reaped (a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_the_result_is_taken_once() -> None:
    with ForkedCall(_audio, 10, 1) as call:
        call.result()
        with pytest.raises(RuntimeError, match="taken already"):
            call.result()
    closed = ForkedCall(_audio, 10, 1)
    closed.close()
    with pytest.raises(RuntimeError, match="taken already"):
        closed.result()


def test_running_out_of_memory_reading_the_answer_is_a_memory_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a job's memory limit, the job fails as out of memory, not as a broken helper."""

    def no_room(pipe: object) -> tuple[bytes, list[bytearray]]:
        raise MemoryError

    monkeypatch.setattr(forked, "_receive", no_room)
    with ForkedCall(_audio, 3_000_001, 5) as call, pytest.raises(MemoryError):
        call.result()
