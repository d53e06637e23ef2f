"""The dance signal's frame spectra, shared by the trials of one scan.

A slope or drift scan measures the same recording under a dozen lines through one point: the
reference's frames move with each trial's line, the dance signal's stay where they are (at the
same resampling, for a resampled speed). Their windowed transforms are made once per scan and
looked up by the frame's first sample; the resampled samples a trial reads are kept with them.
What a trial gets is what it would have made itself, bit for bit. Only one resampling's are
held, and the scan drops them when it ends: never more than a scan's few dozen windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import scipy.fft
from numpy.typing import NDArray

__all__ = ["FrameSpectra", "ScanMemo"]


@dataclass(slots=True)
class FrameSpectra:
    """Windowed ``rfft`` rows of one signal's frames of one length: ``rows[:count]`` in the
    order they were made, ``starts`` their frames' first samples sorted and ``index`` where
    each sits in ``rows``."""

    rows: NDArray[np.complex64] | None = None
    count: int = 0
    made: list[NDArray[np.int64]] = field(default_factory=list)
    starts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    index: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def transform(
        self,
        frames: NDArray[np.float32],
        at: NDArray[np.int64],
        window: NDArray[np.float32],
        workers: int,
    ) -> NDArray[np.complex64]:
        """``rfft(frames[at] × window)`` along the rows, made only for the frames not held.

        ``frames`` is the signal's ``sliding_window_view`` at the frame length; ``at`` the
        distinct first samples of the frames wanted.
        """
        if not len(at):
            return np.zeros((0, frames.shape[1] // 2 + 1), np.complex64)
        pos = np.searchsorted(self.starts, at)
        held = pos < len(self.starts)
        held[held] = self.starts[pos[held]] == at[held]
        missing = at[~held]
        if len(missing):
            self._add(missing, scipy.fft.rfft(frames[missing] * window, axis=1, workers=workers))
            pos = np.searchsorted(self.starts, at)
        assert self.rows is not None  # made above if nothing was held
        found: NDArray[np.complex64] = self.rows[self.index[pos]]
        return found

    def _add(self, starts: NDArray[np.int64], rows: NDArray[np.complex64]) -> None:
        end = self.count + len(rows)
        if self.rows is None or end > len(self.rows):
            # Room for twice as many: each row is copied a bounded number of times.
            grown = np.empty((2 * end, rows.shape[1]), rows.dtype)
            if self.rows is not None:
                grown[: self.count] = self.rows[: self.count]
            self.rows = grown
        self.rows[self.count : end] = rows
        self.made.append(starts)
        every = np.concatenate(self.made)
        order = np.argsort(every, kind="stable")
        self.starts, self.index, self.count = every[order], order, end


@dataclass(slots=True)
class ScanMemo:
    """What the trials of one scan share at one resampling (the latest asked for: a scan's
    trials go through its few resamplings in order, and only one is held): the dance frames'
    spectra per frame length, and the samples made for a trial's windows."""

    key: Fraction | None = None
    spectra: dict[int, FrameSpectra] = field(default_factory=dict)
    samples: tuple[frozenset[tuple[int, int]], NDArray[np.float32]] | None = None

    def frames(self, key: Fraction | None, frame: int) -> FrameSpectra:
        """The frame spectra of the dance signal at resampling ``key`` (None: as recorded)."""
        self._at(key)
        return self.spectra.setdefault(frame, FrameSpectra())

    def resampled(
        self,
        key: Fraction,
        spans: NDArray[np.int64],
        make: Callable[[NDArray[np.int64]], NDArray[np.float32]],
    ) -> NDArray[np.float32]:
        """The dance signal at resampling ``key`` within ``spans`` (rows of first and end
        sample): an earlier trial's samples when they cover every span, else ``make(spans)``."""
        self._at(key)
        wanted = frozenset((int(a), int(b)) for a, b in spans)
        if self.samples is not None and wanted <= self.samples[0]:
            return self.samples[1]
        made = make(spans)
        self.samples = (wanted, made)
        return made

    def _at(self, key: Fraction | None) -> None:
        if key != self.key:
            self.key, self.spectra, self.samples = key, {}, None
