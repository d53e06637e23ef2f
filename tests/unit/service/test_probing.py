"""Uploads are read in a media reader process: a reader that crashes or hangs on a file costs
that file a coded refusal, and the next file gets a new reader; the API process is untouched."""

from __future__ import annotations

import os
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from beatsync.service.errors import ServiceError
from beatsync.service.probing import MediaReader, ReaderPool
from media_reader_faults import crash_on_name, hang_on_name


@pytest.fixture
def reader() -> Iterator[MediaReader]:
    made = MediaReader()
    yield made
    made.close()


@pytest.fixture
def sound(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    t = np.arange(48_000 * 2) / 48_000
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(samples.tobytes())
    return path


def reader_pid(reader: MediaReader) -> int:
    process = reader._process
    assert process is not None
    assert process.pid is not None
    return process.pid


def test_the_reader_answers_with_the_probes_facts(reader: MediaReader, sound: Path) -> None:
    info, streams = reader.read(sound)
    assert (streams, info.video, round(info.duration, 3)) == (1, None, 2.0)
    assert info.audio is not None
    assert info.audio.sample_rate == 48_000
    pid = reader_pid(reader)
    reader.read(sound)
    assert reader_pid(reader) == pid  # one process serves file after file
    assert pid != os.getpid()


def test_a_coded_probe_error_comes_back_with_its_code(reader: MediaReader, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ServiceError) as refused:
        reader.read(junk)
    assert refused.value.code == "INVALID_FORMAT"


def test_a_reader_that_crashes_costs_one_file_a_refusal(sound: Path, tmp_path: Path) -> None:
    reader = MediaReader(crash_on_name)
    reader.read(sound)
    crashed = reader_pid(reader)
    with pytest.raises(ServiceError) as refused:
        reader.read(tmp_path / "class.crash", timeout=30)
    assert refused.value.code == "INVALID_FORMAT"
    assert "stopped the media reader" in str(refused.value.detail)
    info, _ = reader.read(sound)
    assert round(info.duration, 3) == 2.0
    assert reader_pid(reader) != crashed
    reader.close()


def test_a_reader_that_hangs_is_replaced_after_its_time(sound: Path, tmp_path: Path) -> None:
    reader = MediaReader(hang_on_name)
    reader.read(sound)
    hung = reader_pid(reader)
    started = time.monotonic()
    with pytest.raises(ServiceError) as refused:
        reader.read(tmp_path / "class.hang", timeout=1.0)
    assert time.monotonic() - started < 10
    assert refused.value.code == "INVALID_FORMAT"
    assert "took over 1 s" in str(refused.value.detail)
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)
    assert reader.read(sound)[1] == 1
    reader.close()


def test_a_hanging_file_holds_up_one_reader_not_the_others(sound: Path, tmp_path: Path) -> None:
    pool = ReaderPool(size=2, reading=hang_on_name)
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            pool.read(tmp_path / "class.hang", timeout=8.0)
        except ServiceError as exc:
            outcome.append(exc)

    stuck = threading.Thread(target=hang)
    stuck.start()
    time.sleep(0.5)
    started = time.monotonic()
    info, _ = pool.read(sound)  # a second reader answers while the first one hangs
    assert time.monotonic() - started < 6
    assert round(info.duration, 3) == 2.0
    stuck.join(30)
    pool.close()
    assert [e.code for e in outcome if isinstance(e, ServiceError)] == ["INVALID_FORMAT"]
