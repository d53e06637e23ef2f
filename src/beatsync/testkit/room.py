"""Room acoustics for a simulated class recording: reverb, noise, the teacher's voice, the phone.

The loudspeaker's sound reaches the phone by a direct path at delay zero (so the truth is the
direct path, never a reflection), followed either by a reverberant tail of exponentially
decaying noise (a :class:`Room` without a hall) or by the discrete early reflections of an
image-source :class:`~.hall.Hall` and its diffuse tail (see :mod:`.hall`: its direct sound is
at delay zero too, the propagation delay removed, and may be weaker than a reflection). Levels
are set relative to the music as the phone hears it. The teacher's counting is real synthetic
speech from espeak-ng, using only the fixed phrases in :data:`PHRASES`.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from .hall import Hall, hall_response

__all__ = [
    "PHRASES",
    "Room",
    "SpeechUnavailableError",
    "babble",
    "footsteps",
    "hard_clip",
    "impulse_response",
    "phone_agc",
    "pink_noise",
    "record_in_room",
    "reverberate",
    "speech",
]

logger = logging.getLogger(__name__)

# The only texts ever spoken, by espeak-ng voice. Nothing else reaches the command line.
PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "five six seven eight",
        "one two three four",
        "again from the top",
        "okay everybody ready",
        "arms up and turn",
    ),
    "cmn": ("五 六 七 八", "一 二 三 四", "再来一遍", "好 准备"),
}
_ESPEAK_RATE = 22050
# Share of the background noise power from each source: pink hiss, crowd babble, footsteps.
_NOISE_MIX = (0.4, 0.4, 0.2)


class SpeechUnavailableError(RuntimeError):
    """espeak-ng is missing; the message names the Debian package."""


@dataclass(frozen=True, slots=True)
class Room:
    """How the class room and the phone colour the loudspeaker's music.

    ``rt60`` seconds of reverb (0 = none); ``drr_db`` direct-to-reverberant energy ratio;
    ``snr_db`` music power over background noise power (None = silent room); ``speech_db`` the
    teacher's talking over the music, relative to the music (None = no talking while music
    plays); ``preroll_talk`` talking before the music starts; ``footsteps`` thumps on the beat;
    ``clip_db`` gain after normalising the peak to full scale, then hard clipping (None = none);
    ``agc`` the phone's automatic gain control. ``hall``: the room's geometry for the
    image-source model (early reflections from the floor, walls and mirror; ``rt60`` sets its
    absorption and ``drr_db`` is not used: the geometry decides it).
    """

    rt60: float = 0.0
    drr_db: float = 6.0
    snr_db: float | None = None
    speech_db: float | None = None
    preroll_talk: bool = True
    footsteps: bool = False
    clip_db: float | None = None
    agc: bool = False
    hall: Hall | None = None


def impulse_response(
    rng: np.random.Generator, rate: int, *, rt60: float, drr_db: float, predelay: float = 0.004
) -> NDArray[np.float32]:
    """A room impulse response: unit direct path at sample 0, then a decaying noise tail.

    Parameters
    ----------
    rt60
        Time for the tail to decay by 60 dB, seconds (0 gives the bare direct path).
    drr_db
        Direct-to-reverberant energy ratio, dB.
    predelay
        Gap between the direct sound and the first reflections, seconds.
    """
    if rt60 <= 0:
        return np.ones(1, dtype=np.float32)
    n = int(rate * min(rt60 * 1.2, 2.5)) + 1
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    tail[: int(predelay * rate) + 1] = 0.0
    # Air and walls absorb highs: a gentle low-pass keeps the tail from sounding like hiss.
    tail = sps.lfilter([0.5], [1.0, -0.5], tail)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0
    return np.asarray(tail, dtype=np.float32)


def reverberate(x: NDArray[np.float32], ir: NDArray[np.float32]) -> NDArray[np.float32]:
    """``x`` convolved with ``ir``, cut to the length of ``x``."""
    if ir.size == 1:
        return np.asarray(x * ir[0], dtype=np.float32)
    return np.asarray(sps.oaconvolve(x, ir)[: x.size], dtype=np.float32)


def pink_noise(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    """Unit-RMS 1/f noise of ``n`` samples (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def babble(rng: np.random.Generator, n: int, rate: int, *, voices: int = 6) -> NDArray[np.float32]:
    """Unit-RMS crowd murmur: speech-band noise with syllable-rate (3–6 Hz) amplitude bursts."""
    b, a = sps.butter(2, [200.0, 3000.0], btype="bandpass", fs=rate)
    out = np.zeros(n, dtype=np.float64)
    hop = rate // 50
    for _ in range(voices):
        carrier = sps.lfilter(b, a, rng.standard_normal(n))
        steps = n // hop + 2
        syll = rng.uniform(3.0, 6.0)
        env = np.maximum(0.0, np.sin(2 * np.pi * syll * np.arange(steps) / 50 + rng.uniform(0, 6)))
        env *= rng.random(steps) < 0.8
        out += carrier * np.interp(np.arange(n) / hop, np.arange(steps), env)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def footsteps(
    rng: np.random.Generator, n: int, rate: int, *, bpm: float = 120.0
) -> NDArray[np.float32]:
    """Unit-RMS thumps of dancers' feet: decaying 50–110 Hz bursts near every beat."""
    out = np.zeros(n, dtype=np.float64)
    period = 60.0 / bpm
    length = int(0.12 * rate)
    t = np.arange(length) / rate
    at = rng.uniform(0, period)
    while at * rate < n - length:
        freq = rng.uniform(50.0, 110.0)
        thump = np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.03) * rng.uniform(0.5, 1.0)
        i = int(at * rate)
        out[i : i + length] += thump
        at += period + rng.normal(0.0, 0.02)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _espeak(text: str, voice: str) -> NDArray[np.float32]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailableError(
            "teacher speech needs espeak-ng: install the Debian package espeak-ng"
        )
    proc = subprocess.run([exe, "--stdout", "-v", voice, text], capture_output=True, timeout=30)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        raise SpeechUnavailableError(f"espeak-ng -v {voice} failed: {message}")
    with wave.open(io.BytesIO(proc.stdout)) as wav:
        if wav.getsampwidth() != 2 or wav.getframerate() != _ESPEAK_RATE:
            raise SpeechUnavailableError(f"unexpected espeak-ng output format: {wav.getparams()}")
        channels = wav.getnchannels()
        # espeak-ng writes to a pipe, so the header's length is a placeholder; read what is there.
        raw = wav.readframes(1 << 30)
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1) / 32768.0
    out = np.asarray(pcm, dtype=np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def _voice_works(voice: str) -> bool:
    """Whether espeak-ng has ``voice`` (the Mandarin voice is optional; English is not)."""
    try:
        _espeak(PHRASES[voice][0], voice)
    except SpeechUnavailableError:
        logger.warning("espeak-ng has no %r voice; the teacher speaks English only", voice)
        return False
    return True


def speech(text: str, *, voice: str = "en", rate: int = 48000) -> NDArray[np.float32]:
    """One of :data:`PHRASES` spoken by espeak-ng, mono float32 at ``rate`` Hz (cached)."""
    if text not in PHRASES.get(voice, ()):
        raise ValueError(f"not a known phrase for voice {voice!r}: {text!r}")
    x = _espeak(text, voice)
    g = np.gcd(rate, _ESPEAK_RATE)
    return np.asarray(sps.resample_poly(x, rate // g, _ESPEAK_RATE // g), dtype=np.float32)


def _talking(
    rng: np.random.Generator, n: int, rate: int, spans: list[tuple[int, int]]
) -> NDArray[np.float32]:
    """Teacher phrases scattered over the sample spans, unit RMS while speaking."""
    out = np.zeros(n, dtype=np.float32)
    voices = [v for v in PHRASES if v == "en" or (rng.random() < 0.5 and _voice_works(v))]
    for i0, i1 in spans:
        at = i0 + int(rng.uniform(0.1, 0.6) * rate)
        while at < i1:
            voice = voices[int(rng.integers(len(voices)))]
            phrase = PHRASES[voice][int(rng.integers(len(PHRASES[voice])))]
            clip = speech(phrase, voice=voice, rate=rate)
            clip = clip / (np.sqrt(np.mean(clip**2)) + 1e-12)
            end = min(n, at + clip.size, i1)
            out[at:end] += clip[: end - at]
            at += clip.size + int(rng.uniform(0.5, 2.5) * rate)
    return out


def hard_clip(x: NDArray[np.float32], gain_db: float) -> NDArray[np.float32]:
    """Normalise the peak to full scale, add ``gain_db``, and clip to [−1, 1]."""
    peak = float(np.max(np.abs(x))) or 1.0
    return np.asarray(np.clip(x / peak * 10.0 ** (gain_db / 20.0), -1.0, 1.0), dtype=np.float32)


def phone_agc(
    x: NDArray[np.float32], rate: int, *, target_db: float = -18.0, max_gain_db: float = 20.0
) -> NDArray[np.float32]:
    """A phone's slow automatic gain control: fast attack (50 ms), slow release (1 s)."""
    hop = rate // 100
    frames = x.size // hop + 1
    padded = np.zeros(frames * hop, dtype=np.float64)
    padded[: x.size] = x
    level = np.sqrt(np.mean(padded.reshape(frames, hop) ** 2, axis=1)) + 1e-6
    env = np.empty(frames)
    state = level[0]
    attack, release = np.exp(-1.0 / 5.0), np.exp(-1.0 / 100.0)
    for i, v in enumerate(level):
        coef = attack if v > state else release
        state = coef * state + (1.0 - coef) * v
        env[i] = state
    gain_db = np.clip(target_db - 20.0 * np.log10(env), -max_gain_db, max_gain_db)
    gain = 10.0 ** (np.interp(np.arange(x.size) / hop, np.arange(frames), gain_db) / 20.0)
    return (x * gain).astype(np.float32)


def record_in_room(
    music: NDArray[np.float32],
    rate: int,
    rng: np.random.Generator,
    room: Room,
    *,
    music_span: tuple[int, int],
    bpm: float = 120.0,
) -> NDArray[np.float32]:
    """What the phone records: ``music`` (the loudspeaker feed, mono) through ``room``.

    Parameters
    ----------
    music
        Loudspeaker signal on the recording's timeline, mono float32, silent outside the span.
    music_span
        (first, end) sample of the music on that timeline; noise levels are set against the
        music's power there.

    Returns
    -------
    numpy.ndarray
        Mono float32, same length as ``music``, peak at most 1.
    """
    n = music.size
    if room.hall is not None:
        ir = hall_response(room.hall, rate, rng, rt60=room.rt60)
    else:
        ir = impulse_response(rng, rate, rt60=room.rt60, drr_db=room.drr_db)
    heard = reverberate(music, ir)
    i0, i1 = music_span
    music_power = float(np.mean(heard[i0:i1] ** 2)) if i1 > i0 else 1e-4
    mix = heard.astype(np.float64)
    if room.snr_db is not None:
        noise = (
            np.sqrt(_NOISE_MIX[0]) * pink_noise(rng, n)
            + np.sqrt(_NOISE_MIX[1]) * babble(rng, n, rate)
            + np.sqrt(_NOISE_MIX[2] if room.footsteps else 0.0) * footsteps(rng, n, rate, bpm=bpm)
        )
        noise /= np.std(noise) + 1e-12
        mix += noise * np.sqrt(music_power * 10.0 ** (-room.snr_db / 10.0))
    spans = [(0, i0)] if room.preroll_talk and i0 > rate else []
    if room.speech_db is not None:
        spans.append((i0, n))
    if spans:
        talk = reverberate(_talking(rng, n, rate, spans), ir)
        level = room.speech_db if room.speech_db is not None else 0.0
        mix += talk * np.sqrt(music_power * 10.0 ** (level / 10.0))
    out = mix.astype(np.float32)
    if room.agc:
        out = phone_agc(out, rate)
    if room.clip_db is not None:
        return hard_clip(out, room.clip_db)
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * min(1.0, 0.9 / peak)).astype(np.float32)
