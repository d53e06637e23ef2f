"""decode_audio(): samples placed by presentation time, at the requested rate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from beatsync.engine import decode_audio


def _write_tone(path: Path, *, rate: int, start_pts: int, seconds: float, gap: float = 0.0) -> None:
    """A 440 Hz tone in PCM whose first packet sits at ``start_pts`` and which has a gap."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        n = int(seconds * rate)
        t = np.arange(n) / rate
        tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
        block = rate // 10
        pts = start_pts
        for i in range(0, n, block):
            if gap and i == n // 2:
                pts += int(gap * rate)
            frame = av.AudioFrame.from_ndarray(
                tone[None, i : i + block], format="s16", layout="mono"
            )
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            frame.pts = pts
            pts += frame.samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_rate_mono_and_start(tmp_path: Path) -> None:
    path = tmp_path / "tone.mkv"
    _write_tone(path, rate=44100, start_pts=int(0.5 * 44100), seconds=2.0)
    audio = decode_audio(path)
    assert audio.rate == 16000
    assert audio.samples.ndim == 1
    assert audio.samples.dtype == np.float32
    assert audio.start == pytest.approx(0.5, abs=1e-3)
    assert audio.duration == pytest.approx(2.0, abs=0.01)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert np.fft.rfftfreq(len(audio.samples), 1 / 16000)[np.argmax(spectrum)] == pytest.approx(
        440, abs=2
    )


def test_gap_stays_silent(tmp_path: Path) -> None:
    path = tmp_path / "gap.mkv"
    _write_tone(path, rate=16000, start_pts=0, seconds=2.0, gap=0.5)
    audio = decode_audio(path)
    assert audio.duration == pytest.approx(2.5, abs=0.01)
    middle = audio.samples[int(1.1 * 16000) : int(1.4 * 16000)]
    assert np.abs(middle).max() < 1e-3
    assert np.abs(audio.samples[:16000]).max() > 0.3


def test_span_and_stereo(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    whole = decode_audio(case.bgm, rate=48000, mono=False)
    part = decode_audio(case.bgm, rate=48000, mono=False, start=2.0, end=4.0)
    assert whole.samples.shape[0] == 2
    assert part.samples.shape[0] == 2
    assert part.start == pytest.approx(2.0, abs=1e-4)
    assert part.duration == pytest.approx(2.0, abs=1e-3)
    offset = round((part.start - whole.start) * 48000)
    # The resampler starts afresh after the seek: equal to within its filter's transient, and
    # a one-sample misplacement would differ by far more.
    np.testing.assert_allclose(
        part.samples[:, 1000:5000], whole.samples[:, offset + 1000 : offset + 5000], atol=5e-3
    )


def test_ten_minutes_decode_in_bounded_memory(tmp_path: Path) -> None:
    """A 10-minute 48 kHz stereo file decodes to 16 kHz mono without holding the whole source."""
    import subprocess
    import sys

    path = tmp_path / "long.mkv"
    rate, seconds = 48000, 600
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        block = np.zeros((1, rate * 2), dtype=np.int16)
        rng = np.random.default_rng(3)
        for second in range(seconds):
            block[0] = rng.integers(-3000, 3000, rate * 2, dtype=np.int16)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            frame.pts = second * rate
            for packet in stream.encode(frame):
                out.mux(packet)
    code = (
        "import resource, sys\n"
        "from beatsync.engine import decode_audio\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"audio = decode_audio({str(path)!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(audio.duration, before // 1024, after // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    duration, before_mb, after_mb = done.stdout.split()
    assert float(duration) == pytest.approx(seconds, abs=0.01)
    # The result itself is 38 MB; the 230 MB of decoded source audio must never be held at once.
    assert int(after_mb) - int(before_mb) < 120, done.stdout


def _damage(source: Path, target: Path, *, kind: str, span: tuple[float, float]) -> int:
    """Copy ``source`` with the packets of its first ``kind`` stream in ``span`` (s) overwritten
    by seeded noise; how many packets were damaged."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(5)
    hit = 0
    with av.open(str(source)) as container:
        stream = container.streams.audio[0] if kind == "audio" else container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.pos is None or packet.time_base is None:
                continue
            if span[0] <= packet.pts * packet.time_base < span[1]:
                noise = rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes()
                data[packet.pos : packet.pos + packet.size] = noise
                hit += 1
    target.write_bytes(bytes(data))
    return hit


def test_a_damaged_packet_costs_its_own_samples_only(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = small_case("small-clean").dance
    damaged = tmp_path / "damaged.mp4"
    assert _damage(source, damaged, kind="audio", span=(6.0, 6.03)) >= 1

    clean = decode_audio(source)
    hurt = decode_audio(damaged)
    assert hurt.start == clean.start
    assert len(hurt.samples) == len(clean.samples)
    rate = clean.rate
    before = int(5.8 * rate)
    np.testing.assert_allclose(hurt.samples[:before], clean.samples[:before], atol=1e-4)
    # After it the sound is the same, in the same place: the decoder may restart its
    # resampling a fraction of a sample apart, which moves nothing a person could hear.
    after = slice(int(6.3 * rate), int(12.5 * rate))
    x, y = clean.samples[after].astype(np.float64), hurt.samples[after].astype(np.float64)
    lags = range(-8, 9)
    scores = [float(np.dot(x[8:-8], y[8 + lag : len(y) - 8 + lag])) for lag in lags]
    assert lags[int(np.argmax(scores))] == 0
    assert max(scores) / float(np.dot(x[8:-8], x[8:-8])) > 0.95
