"""The alignment plot: a PNG showing at a glance whether the music lines up and where the cut is.

Three panels over dance time: both loudness envelopes after alignment (live above, reference
mirrored below), each window's lag against the fitted line in milliseconds, and how well each
moment matches with the span where the music is heard. The kept cut is shaded in all three.
For an edit, each window is read against its own piece's line, the seams are marked in every
panel and each piece's stretch of music is labelled with its offset.

Matplotlib is imported inside :func:`write_plot` (it is slow to import) and driven through
``Figure`` and the Agg canvas directly, never ``pyplot``: no global backend or figure state, so
plots can be drawn from several threads or processes at once.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from beatsync import __version__

from ..errors import ProcessingError
from .report import describe_adjustment, window_residuals_ms, write_atomically

if TYPE_CHECKING:
    from ..result import SyncResult

__all__ = ["PLOT_DPI", "PLOT_SIZE_IN", "plot_title", "write_plot"]

logger = logging.getLogger(__name__)

PLOT_SIZE_IN = (9.0, 6.75)
PLOT_DPI = 120
"""The PNG is ``PLOT_SIZE_IN × PLOT_DPI`` pixels: 1080 × 810."""

# The panels are ~900 px wide; more points than this only add bytes and drawing time.
_MAX_POINTS = 1800
_PALETTE = 256
# The residual panel shows at least ±this many ms, so a perfect fit does not magnify noise.
_MIN_SPAN_MS = 10.0
# A used mapping further than this from the fit (another candidate) would flatten the panel.
_MAX_USED_SHIFT_MS = 250.0

_LIVE = "#1f6fb4"
_REF = "#e07b1a"
_CUT = "#2ca02c"
_OUTLIER = "#c0392b"
_SEAM = "#7b3fa0"
_PIECE_COLOURS = ("#e07b1a", "#b5651d")


def plot_title(result: SyncResult) -> str:
    """The plot's two-line title: the two files, then offset, drift and confidence."""
    used = result.mapping
    ppm = used.drift_ppm
    facts = [
        f"offset {used.offset:+.3f} s",
        f"drift {ppm:+.1f} ppm",
        f"confidence {result.alignment.confidence:.2f}",
    ]
    if abs(ppm) >= 1000.0:
        facts.insert(2, f"speed ×{used.scale:.4f}")
    adjustment = describe_adjustment(result.alignment, used)
    if adjustment.kind == "candidate":
        facts.append(f"candidate #{adjustment.candidate}")
    elif adjustment.kind == "manual":
        facts.append("mapping given")
    if adjustment.nudge_ms:
        facts.append(f"nudged {adjustment.nudge_ms:+g} ms")
    if len(result.parts) > 1:
        facts.insert(0, f"edit of {len(result.parts)} pieces")
    names = f"{Path(result.dance.path).name}  ↔  {Path(result.bgm.path).name}"
    return names + "\n" + "  ·  ".join(facts)


def write_plot(result: SyncResult, path: Path) -> Path:
    """Draw the alignment plot of ``result`` as a PNG at ``path``, all at once or not at all.

    Parameters
    ----------
    result
        What :func:`beatsync.engine.pipeline.sync` returned; its ``alignment`` carries the
        envelopes, window lags and activity curve drawn here.
    path
        Where to write the PNG (1080 × 810 px, 256 colours, typically 50–80 kB).

    Returns
    -------
    Path
        ``path``. Raises :class:`~beatsync.engine.errors.ProcessingError` when it cannot be written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        # Fail before the costly drawing; write_atomically would refuse the same way.
        raise ProcessingError("cannot write the file: no such directory", path=str(path))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    env_ax, lag_ax, act_ax = fig.subplots(3, 1, sharex=True, height_ratios=[2.0, 2.0, 1.3])
    title = plot_title(result)
    fig.suptitle(_drawable(title), fontsize=11)

    end = max(result.dance.duration, result.cut.end, 1e-3)
    for ax in (env_ax, lag_ax, act_ax):
        label = "kept cut" if ax is env_ax else None
        ax.axvspan(result.cut.start, result.cut.end, color=_CUT, alpha=0.09, lw=0, label=label)
        for edge in (result.cut.start, result.cut.end):
            ax.axvline(edge, color=_CUT, lw=1.0, ls="--")
        for k, piece in enumerate(result.parts[1:]):
            label = "seam" if ax is env_ax and k == 0 else None
            ax.axvline(piece.start, color=_SEAM, lw=1.2, ls=":", label=label)
        ax.grid(True, color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
        ax.set_xlim(0.0, end)
    _draw_envelopes(env_ax, result)
    _draw_lags(lag_ax, result, end)
    _draw_activity(act_ax, result)
    act_ax.set_xlabel("dance time (s)")

    write_atomically(path, _palette_png(fig, title))
    logger.debug("wrote plot %s", path)
    return path


def _palette_png(fig: Any, title: str) -> bytes:
    """The drawn figure as a PNG of at most 256 colours, titled.

    Flat fills, lines and anti-aliased text take a few hundred colours: a palette keeps them
    apart and the file is a third of the truecolour one (74 kB, not 212 kB, for a 3-minute
    class), which a phone fetches with every answer.
    """
    from PIL import Image, PngImagePlugin

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    image = Image.fromarray(np.ascontiguousarray(rgba[..., :3])).quantize(
        _PALETTE, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", title)  # iTXt when it is not Latin-1
    info.add_text("Software", f"beatsync {__version__}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, optimize=True, dpi=(PLOT_DPI, PLOT_DPI))
    return buffer.getvalue()


def _draw_envelopes(ax: Any, result: SyncResult) -> None:
    times, live, ref = (np.asarray(a, dtype=np.float64) for a in result.alignment.envelopes)
    ax.set_title("loudness envelopes after alignment", fontsize=9, loc="left")
    ax.set_ylabel("level (normalised)")
    ax.set_ylim(-1.1, 1.1)
    ax.set_yticks([-1.0, 0.0, 1.0], ["1", "0", "1"])
    if times.size == 0:
        _empty(ax, "no envelopes")
        return
    t, live_pk = _peaks(times, live)
    _, ref_pk = _peaks(times, ref)
    ax.fill_between(t, 0.0, live_pk, color=_LIVE, alpha=0.85, lw=0, label="live recording")
    ax.fill_between(t, 0.0, -ref_pk, color=_REF, alpha=0.85, lw=0, label="reference, mapped")
    ax.axhline(0.0, color="#555555", lw=0.5)
    ax.legend(loc="upper right", fontsize=8, ncols=3, framealpha=0.85)


def _draw_lags(ax: Any, result: SyncResult, end: float) -> None:
    windows = result.alignment.windows
    found = result.alignment.mapping
    ax.set_ylabel("lag − fit (ms)")
    times = np.asarray(windows.times, dtype=np.float64)
    pieces = result.alignment.parts
    residual = window_residuals_ms(windows, found, pieces)
    inlier = np.asarray(windows.inlier, dtype=bool)
    strength = np.clip(np.asarray(windows.strength, dtype=np.float64), 0.0, 1.0)
    finite = np.isfinite(residual) & np.isfinite(times)
    keep_in, keep_out = finite & inlier, finite & ~inlier
    rms = float(np.sqrt(np.mean(residual[keep_in] ** 2))) if keep_in.any() else float("nan")
    ax.set_title(
        f"window lags minus fitted line: {int(keep_in.sum())} of {times.size} windows agree"
        + (f", rms {rms:.1f} ms" if np.isfinite(rms) else ""),
        fontsize=9,
        loc="left",
    )
    ax.axhline(
        0.0,
        color="#222222",
        lw=1.2,
        label=(
            f"fit: offset {found.offset:.3f} s, drift {found.drift_ppm:+.1f} ppm"
            if len(pieces) == 1
            else f"each piece's fit, drift {found.drift_ppm:+.1f} ppm"
        ),
    )
    limit = _MIN_SPAN_MS
    if keep_in.any():
        limit = max(limit, 1.5 * float(np.percentile(np.abs(residual[keep_in]), 98)))
    used = result.mapping
    if used != found:
        span = np.array([0.0, end])
        shift = ((used.offset - found.offset) + (used.scale - found.scale) * span) * 1000.0
        widest = float(np.max(np.abs(shift)))
        if widest <= _MAX_USED_SHIFT_MS:
            limit = max(limit, 1.25 * widest)
            ax.plot(span, shift, color=_CUT, lw=1.4, ls="-.", label="mapping used")
        else:
            ax.plot([], [], color=_CUT, lw=1.4, ls="-.", label="mapping used: off scale")
    if keep_in.any():
        ax.scatter(
            times[keep_in],
            residual[keep_in],
            s=6.0 + 26.0 * strength[keep_in],
            color=_LIVE,
            alpha=0.8,
            lw=0,
            label="window (agrees)",
        )
    if keep_out.any():
        inside = keep_out & (np.abs(residual) <= limit)
        clipped = keep_out & ~inside
        ax.scatter(times[inside], residual[inside], s=18, color=_OUTLIER, marker="x", lw=1.0)
        up, down = clipped & (residual > 0), clipped & (residual < 0)
        ax.scatter(times[up], np.full(up.sum(), 0.94 * limit), s=18, color=_OUTLIER, marker="^")
        ax.scatter(
            times[down], np.full(down.sum(), -0.94 * limit), s=18, color=_OUTLIER, marker="v"
        )
        ax.scatter([], [], s=18, color=_OUTLIER, marker="x", label="outlier (▲▼ off scale)")
    if times.size == 0:
        _empty(ax, "no windows")
    ax.set_ylim(-limit, limit)
    ax.legend(loc="upper right", fontsize=8, ncols=2, framealpha=0.85)


def _draw_activity(ax: Any, result: SyncResult) -> None:
    times, score = (np.asarray(a, dtype=np.float64) for a in result.alignment.activity)
    music = result.alignment.music
    start, stop = music.start, music.end
    quiet_in, quiet_out = music.start_evidence.unheard, music.end_evidence.unheard
    kept = [f"{x:.1f} s at the {side}" for x, side in ((quiet_in, "start"), (quiet_out, "end"))]
    kept = [k for k, x in zip(kept, (quiet_in, quiet_out), strict=True) if x >= 0.5]
    ax.set_title(
        f"match with the reference; music plays {start:.2f}–{stop:.2f} s"
        + (f" (too quiet to hear, kept: {', '.join(kept)})" if kept else ""),
        fontsize=9,
        loc="left",
    )
    ax.set_ylabel("match (0–1)")
    ax.set_ylim(0.0, 1.25)
    ax.set_yticks([0.0, 0.5, 1.0])
    if times.size:
        t, s = _peaks(times, score)
        ax.fill_between(t, 0.0, s, color=_LIVE, alpha=0.35, lw=0)
        ax.plot(t, s, color=_LIVE, lw=0.8, label="match score")
    else:
        _empty(ax, "no match curve")
    pieces = result.alignment.parts
    if len(pieces) == 1:
        ax.plot([start, stop], [1.13, 1.13], color=_REF, lw=4.0, solid_capstyle="butt",
                label="music")  # fmt: skip
    for k, piece in enumerate(pieces if len(pieces) > 1 else ()):
        colour = _PIECE_COLOURS[k % 2]
        ax.plot([piece.start, piece.end], [1.13, 1.13], color=colour, lw=4.0,
                solid_capstyle="butt", label="music, by piece" if k == 0 else None)  # fmt: skip
        ax.text((piece.start + piece.end) / 2, 1.03, f"{k + 1}: {piece.mapping.offset:+.2f} s",
                ha="center", va="top", fontsize=7, color=colour,
                bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 1.0})  # fmt: skip
    if quiet_in > 0 or quiet_out > 0:
        # The doubtful ends: kept as music though the room could not tell.
        for lo, hi in ((start, start + quiet_in), (stop - quiet_out, stop)):
            ax.plot([lo, hi], [1.13, 1.13], color="white", lw=2.0, solid_capstyle="butt")
        ax.plot([], [], color=_REF, lw=1.0, label="music, too quiet to hear")
    ax.legend(loc="lower right", fontsize=8, ncols=2, framealpha=0.85)


def _drawable(text: str) -> str:
    """``text`` with characters the default font cannot draw (CJK file names, say) as ``?``.

    Matplotlib would draw an empty box and warn for each; the PNG's metadata keeps the real text.
    """
    from matplotlib.font_manager import FontProperties, findfont, get_font

    font = get_font(findfont(FontProperties()))
    return "".join(c if c.isspace() or font.get_char_index(ord(c)) else "?" for c in text)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#888888")


def _peaks(
    times: NDArray[np.float64], values: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """At most ``_MAX_POINTS`` points keeping each bucket's maximum, so beats stay visible."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    n = min(times.size, values.size)
    times, values = times[:n], values[:n]
    if n <= _MAX_POINTS:
        return times, values
    size = -(-n // _MAX_POINTS)
    buckets = n // size
    peaks = values[: buckets * size].reshape(buckets, size).max(axis=1)
    centres = times[: buckets * size].reshape(buckets, size).mean(axis=1)
    return centres, peaks
