"""Image-source class rooms: a loudspeaker near the walls, a phone a few metres away.

A dance studio is a shoebox with a mirror wall, a hard floor and little on the walls, so the
first reflections (floor, the wall behind the loudspeaker, the mirror, the ceiling) arrive a few
milliseconds after the direct sound at nearly its level, and a crowd between the loudspeaker and
the phone can leave the direct sound weaker than a reflection. :func:`hall_response` computes
the early part of the impulse response by the image-source model of PyPI ``pyroomacoustics``
(every reflection up to the order that is complete, with the loudspeaker's directivity seen from
each image) and continues it with an exponentially decaying noise tail at the requested RT60
from where the model stops being complete.

Timing: the response is on the phone's timeline with the direct sound at delay 0. The direct
path's propagation delay (distance / speed of sound, about 3 ms per metre) is removed: the
picture and the truth are defined by the direct sound at the phone, which is what the dancers
next to the phone hear, and every reflection keeps its delay relative to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

__all__ = ["CORNER_STUDIO", "GYM", "MIRROR_STUDIO", "Hall", "hall_response"]

SPEED_OF_SOUND = 343.0  # m/s at 20 °C
# Taps of the windowed-sinc fractional delay of each reflection (odd: centred on its arrival).
_SINC_TAPS = 81
# Seconds of overlap between the modelled reflections and the noise tail that continues them.
_CROSSFADE = 0.02


@dataclass(frozen=True, slots=True)
class Hall:
    """A shoebox room: walls at x = 0 (the mirror) and x = ``size[0]``, y = 0 and ``size[1]``,
    floor z = 0, ceiling z = ``size[2]``; lengths in metres.

    ``speaker`` and ``phone`` are positions; ``aim`` the azimuth (degrees from +x towards +y)
    the loudspeaker points to; ``pattern`` its cardioid-family shape (1 omnidirectional, 0.5
    cardioid: the rear gets (2·pattern − 1)); ``mirror`` and ``floor`` the energy absorption of
    the mirror wall and the floor; the other walls and the ceiling absorb whatever the RT60
    asks. ``shadow_db`` is the loss of the paths that stay at body height (the direct sound and
    reflections off the walls and floor, never off the ceiling): dancers standing between the
    loudspeaker and the phone. ``order`` bounds the reflections modelled one by one.
    """

    size: tuple[float, float, float] = (12.0, 8.0, 3.2)
    speaker: tuple[float, float, float] = (0.5, 0.6, 1.2)
    phone: tuple[float, float, float] = (1.4, 4.4, 1.1)
    aim: float = 40.0
    pattern: float = 0.7
    mirror: float = 0.03
    floor: float = 0.06
    shadow_db: float = 0.0
    order: int = 12


# A studio with its mirror along the front wall: the loudspeaker by the side wall aimed over
# the class at the mirror, the phone on a tripod 1.6 m from the mirror filming the class. The
# dancers shadow the direct sound a little; the mirror returns it 9 ms later.
MIRROR_STUDIO = Hall(
    size=(12.0, 8.0, 3.2),
    speaker=(5.2, 7.0, 1.4),
    phone=(1.6, 4.2, 1.0),
    aim=-142.0,
    pattern=0.5,
    shadow_db=2.0,
)
# A small studio: the loudspeaker against the back wall, the phone on a window sill 0.4 m from
# the side wall, which returns the sound 2 ms after it arrives.
CORNER_STUDIO = Hall(
    size=(9.0, 6.0, 3.0),
    speaker=(0.5, 2.5, 1.0),
    phone=(3.8, 5.6, 1.1),
    aim=43.0,
    pattern=0.5,
    shadow_db=1.0,
)
# A school gym: a 7 m ceiling over a packed crowd. The direct sound crosses the crowd; the
# ceiling's reflection passes over the heads and arrives 15 ms later, louder.
GYM = Hall(
    size=(24.0, 14.0, 7.0),
    speaker=(1.0, 7.0, 1.5),
    phone=(11.0, 7.6, 1.2),
    aim=0.0,
    pattern=0.5,
    mirror=0.05,
    floor=0.05,
    shadow_db=9.0,
    order=10,
)


def hall_response(
    hall: Hall, rate: int, rng: np.random.Generator, *, rt60: float
) -> NDArray[np.float32]:
    """The impulse response from the loudspeaker to the phone, direct sound at sample 0.

    Parameters
    ----------
    hall
        The room and where things stand in it.
    rate
        Sample rate, Hz.
    rng
        Draws the noise tail.
    rt60
        Reverberation time, seconds: sets the absorption of the walls and ceiling and the
        decay of the tail.

    Returns
    -------
    numpy.ndarray
        float32, ``min(1.2 × rt60, 2.5)`` seconds long. The direct path is an impulse of
        amplitude ``gain × 10 ** (-shadow_db / 20)`` at sample 0 exactly (``gain`` the
        loudspeaker's directivity towards the phone); everything else arrives later.
    """
    if rt60 <= 0:
        raise ValueError("a hall needs a reverberation time")
    delays, amps, horizon = _reflections(hall, rate, rt60)
    n = int(rate * min(rt60 * 1.2, 2.5)) + 1
    ir = np.zeros(n + _SINC_TAPS, dtype=np.float64)
    half = _SINC_TAPS // 2
    # The direct path is an exact impulse at sample 0; reflections are windowed sincs on their
    # fractional arrivals (the part of a sinc before sample 0 is dropped: it is not causal).
    ir[half] = amps[0]
    taps = np.arange(-half, half + 1)
    window = np.hanning(_SINC_TAPS + 2)[1:-1]
    at = delays[1:] * rate
    whole = np.floor(at).astype(np.int64)
    kernels = np.sinc(taps[None, :] - (at - whole)[:, None]) * window[None, :] * amps[1:, None]
    keep = whole < n
    idx = whole[keep, None] + taps[None, :] + half
    np.add.at(ir, idx.ravel(), kernels[keep].ravel())
    early = ir[half : half + n]
    # From the horizon on the model misses reflections of higher orders: there a noise tail
    # takes over, faded in while the modelled reflections fade out.
    i0 = max(1, int((horizon - _CROSSFADE) * rate))
    i1 = max(i0 + 1, int(horizon * rate))
    ramp = np.clip((np.arange(n) - i0) / (i1 - i0), 0.0, 1.0)
    tail = _tail(rng, rate, n, level=_level(early, rate, i0, rt60=rt60), rt60=rt60)
    return (early * (1.0 - ramp) + tail * ramp).astype(np.float32)


def _reflections(
    hall: Hall, rate: int, rt60: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Delays (s, relative to the direct sound, ascending; the direct first at 0) and
    amplitudes (relative to the unshadowed direct sound) of every image source up to the
    horizon, the delay (s) from which the model would miss reflections of higher order."""
    # Imported here: the image-source model is a test dependency, needed only to build media.
    import pyroomacoustics as pra
    from pyroomacoustics import doa
    from pyroomacoustics.directivities import CardioidFamily, DirectionVector

    rest = _rest_absorption(hall, rt60)
    materials = pra.make_materials(
        ceiling=rest, floor=hall.floor, east=rest, west=hall.mirror, north=rest, south=rest
    )
    # One order more than kept: the nearest image of that order marks where completeness ends.
    room = pra.ShoeBox(
        list(hall.size), fs=rate, materials=materials, max_order=hall.order + 1,
        air_absorption=False,
    )  # fmt: skip
    facing = CardioidFamily(
        orientation=DirectionVector(azimuth=hall.aim, colatitude=90.0, degrees=True),
        p=hall.pattern,
    )
    room.add_source(list(hall.speaker), directivity=facing)
    room.add_microphone(list(hall.phone))
    room.image_source_model()
    src = room.sources[0]
    seen = np.asarray(room.visibility[0][0], dtype=bool)
    images = np.asarray(src.images)[:, seen]
    orders = np.asarray(src.orders)[seen]
    damping = np.asarray(src.damping)[0, seen]
    azimuth, colatitude, _ = doa.cart2spher(np.asarray(src.directions)[0][:, seen])
    gain = np.asarray(facing.get_response(azimuth=azimuth, colatitude=colatitude, degrees=False))
    dist = np.linalg.norm(images - np.asarray(hall.phone, dtype=np.float64)[:, None], axis=0)
    amp = damping * gain / dist
    direct = int(np.flatnonzero(orders == 0)[0])
    # Amplitudes relative to the direct sound as the loudspeaker's axis would carry it.
    amp /= abs(amp[direct] / gain[direct])
    limit = float(dist[orders == hall.order + 1].min())
    keep = (dist < limit) & (orders <= hall.order)
    order = np.argsort(dist[keep], kind="stable")
    delays = (dist[keep][order] - dist[direct]) / SPEED_OF_SOUND
    # The dancers stand between the loudspeaker and the phone: every path that stays at their
    # height (direct, off the walls, off the floor, never off the ceiling) loses shadow_db.
    low = np.isclose(np.abs(images[2]), hall.speaker[2])
    amp = np.where(low, amp * 10.0 ** (-hall.shadow_db / 20.0), amp)
    amps = amp[keep][order]
    if delays[0] != 0.0:
        raise AssertionError("the direct path must be the first arrival")
    return delays, amps, (limit - float(dist[direct])) / SPEED_OF_SOUND


def _rest_absorption(hall: Hall, rt60: float) -> float:
    """Energy absorption of the ceiling and the three plain walls that gives ``rt60`` by
    Sabine's formula, the mirror and the floor absorbing what the hall says."""
    lx, ly, lz = hall.size
    volume = lx * ly * lz
    needed = 24.0 * math.log(10.0) * volume / (SPEED_OF_SOUND * rt60)
    fixed = hall.mirror * ly * lz + hall.floor * lx * ly
    rest_area = lx * ly + ly * lz + 2 * lx * lz
    alpha = (needed - fixed) / rest_area
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"no absorption gives RT60 {rt60} s in a {lx}×{ly}×{lz} m hall")
    return alpha


def _level(early: NDArray[np.float64], rate: int, at: int, *, rt60: float) -> float:
    """RMS the decay would have at t = 0 to give the modelled reflections' energy in the
    ``_CROSSFADE`` seconds before sample ``at``."""
    first = max(1, at - int(_CROSSFADE * rate))
    if at <= first:
        return 0.0
    mid = (first + at) / 2 / rate
    return math.sqrt(float(np.mean(early[first:at] ** 2))) * math.exp(6.908 * mid / rt60)


def _tail(
    rng: np.random.Generator, rate: int, n: int, *, level: float, rt60: float
) -> NDArray[np.float64]:
    """Diffuse reverberation: noise of RMS ``level`` at t = 0 decaying by 60 dB in ``rt60``."""
    noise = rng.standard_normal(n)
    # Air and walls absorb highs: a gentle low-pass keeps the tail from sounding like hiss.
    noise = sps.lfilter([0.5], [1.0, -0.5], noise)
    noise /= np.std(noise) + 1e-12
    decay = np.exp(-6.908 * np.arange(n) / rate / rt60)
    out: NDArray[np.float64] = noise * decay * level
    return out
