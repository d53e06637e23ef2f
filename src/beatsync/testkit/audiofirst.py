"""A reference audio-first client: what a phone does with its video instead of uploading it.

:func:`video_manifest` reads the MP4/MOV sample tables straight from the boxes;
:func:`extract_audio` re-wraps the audio track's AAC packets into an M4A without re-encoding;
:func:`keyframe_thumbnails` and :func:`frame_thumbnails` decode the pictures the service asks for
as 96×54 grey thumbnails; :func:`assemble` muxes the copied video samples with the service's
audio track. The JavaScript clients do the same; the tests hold the service to this one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from .mp4box import _boxes, _child, _elst, _read_moov

__all__ = [
    "THUMB_SIZE",
    "assemble",
    "extract_audio",
    "frame_thumbnails",
    "keyframe_thumbnails",
    "video_manifest",
]

THUMB_SIZE = (96, 54)


def _u32(data: bytes, at: int) -> int:
    return int(struct.unpack(">I", data[at : at + 4])[0])


def _full_table(data: bytes, span: tuple[int, int] | None, signed: bool = False) -> list[list[int]]:
    """Entries of a stts/ctts-like box: (count, value) pairs."""
    if span is None:
        return []
    s, _ = span
    version = data[s]
    count = _u32(data, s + 4)
    fmt = ">Ii" if signed and version == 1 else ">II"
    if signed and version == 0:
        fmt = ">Ii"  # version 0 offsets are unsigned in the spec, but writers store them signed
    return [list(struct.unpack(fmt, data[s + 8 + 8 * i : s + 16 + 8 * i])) for i in range(count)]


def _track_info(data: bytes, s: int, e: int) -> dict[str, Any]:
    tkhd = _child(data, s, e, "tkhd")
    assert tkhd is not None
    version = data[tkhd[0]]
    track_id = _u32(data, tkhd[0] + (20 if version == 1 else 12))
    mdia = _child(data, s, e, "mdia")
    assert mdia is not None
    hdlr = _child(data, *mdia, "hdlr")
    assert hdlr is not None
    handler = data[hdlr[0] + 8 : hdlr[0] + 12].decode("latin-1")
    mdhd = _child(data, *mdia, "mdhd")
    assert mdhd is not None
    timescale = _u32(data, mdhd[0] + (20 if data[mdhd[0]] == 1 else 12))
    minf = _child(data, *mdia, "minf")
    assert minf is not None
    stbl = _child(data, *minf, "stbl")
    assert stbl is not None
    stsd = _child(data, *stbl, "stsd")
    assert stsd is not None
    entry = stsd[0] + 8
    fourcc = data[entry + 4 : entry + 8].decode("latin-1")
    edits = None
    edts = _child(data, s, e, "edts")
    if edts is not None and (elst := _child(data, *edts, "elst")) is not None:
        edits = [[e.duration, e.media_time, e.rate] for e in _elst(data, elst[0])]
    info: dict[str, Any] = {
        "track_id": track_id,
        "handler": handler,
        "timescale": timescale,
        "codec": fourcc,
        "edits": edits,
        "stbl": stbl,
        "entry": entry,
    }
    return info


def video_manifest(path: Path | str) -> dict[str, Any]:
    """The ``video_manifest`` of an MP4/MOV file, read from its boxes (not through FFmpeg)."""
    with open(path, "rb") as f:
        head = f.read(16)
    brand = head[8:12].decode("latin-1") if head[4:8] == b"ftyp" else "qt  "
    data = _read_moov(Path(path))
    mvhd = _child(data, 0, len(data), "mvhd")
    assert mvhd is not None
    v = data[mvhd[0]]
    movie_scale = _u32(data, mvhd[0] + (20 if v == 1 else 12))
    movie_duration = (
        struct.unpack(">Q", data[mvhd[0] + 24 : mvhd[0] + 32])[0]
        if v == 1
        else _u32(data, mvhd[0] + 16)
    )
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    for kind, s, e in _boxes(data, 0, len(data)):
        if kind != "trak":
            continue
        t = _track_info(data, s, e)
        stbl: tuple[int, int] = t.pop("stbl")
        entry: int = t.pop("entry")
        if t["handler"] == "vide" and video is None:
            stts = _full_table(data, _child(data, stbl[0], stbl[1], "stts"))
            ctts_box = _child(data, stbl[0], stbl[1], "ctts")
            stss = _child(data, stbl[0], stbl[1], "stss")
            sync = None
            if stss is not None:
                n = _u32(data, stss[0] + 4)
                sync = [_u32(data, stss[0] + 8 + 4 * i) - 1 for i in range(n)]
            video = {
                "track_id": t["track_id"],
                "codec": t["codec"],
                "width": struct.unpack(">H", data[entry + 32 : entry + 34])[0],
                "height": struct.unpack(">H", data[entry + 34 : entry + 36])[0],
                "rotation": _rotation(path),
                "timescale": t["timescale"],
                "sample_count": sum(c for c, _ in stts),
                "stts": stts,
                "ctts": _full_table(data, ctts_box, signed=True) if ctts_box else None,
                "sync": sync,
                "edits": t["edits"],
            }
        elif t["handler"] == "soun" and audio is None:
            channels, _, _, _, rate = struct.unpack(">HHHHI", data[entry + 24 : entry + 36])
            audio = {
                "track_id": t["track_id"],
                "codec": t["codec"],
                "timescale": t["timescale"],
                "sample_rate": rate >> 16,
                "channels": channels,
                "edits": t["edits"],
            }
    if video is None or audio is None:
        raise ValueError(f"{path}: needs a video and an audio track")
    return {
        "version": 1,
        "brand": brand,
        "movie_timescale": movie_scale,
        "duration": movie_duration / movie_scale,
        "video": video,
        "audio": audio,
    }


def _rotation(path: Path | str) -> int:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return 0 if np.isnan(frame.rotation) else round(frame.rotation) % 360
    return 0


def extract_audio(path: Path | str, out: Path | str) -> None:
    """The first audio track's packets re-wrapped in an M4A, timing kept, nothing re-encoded."""
    with av.open(str(path)) as src, av.open(str(out), "w", format="ipod") as dst:
        source = src.streams.audio[0]
        stream = dst.add_stream_from_template(source)
        for packet in src.demux(source):
            if packet.dts is None:
                continue
            packet.stream = stream
            dst.mux(packet)


def _thumb(frame: av.VideoFrame) -> bytes:
    small = frame.reformat(
        width=THUMB_SIZE[0], height=THUMB_SIZE[1], format="gray", interpolation="AREA"
    )
    return bytes(np.ascontiguousarray(small.to_ndarray()[:, : THUMB_SIZE[0]]).tobytes())


def _decoded(path: Path | str, *, keyframes_only: bool) -> Iterator[tuple[int, bytes]]:
    """(decode-order sample index, thumbnail) of every shown frame (or keyframe)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        index_of: dict[int | None, int] = {}
        count = 0
        for packet in container.demux(stream):
            if packet.size:
                index_of[packet.pts if packet.pts is not None else packet.dts] = count
                count += 1
            for frame in packet.decode():
                yield index_of[frame.pts], _thumb(frame)


def keyframe_thumbnails(path: Path | str, sync: Sequence[int] | None, count: int) -> bytes:
    """The thumbnails of every keyframe, in the order of ``sync`` (all samples when None)."""
    keys = list(range(count)) if sync is None else list(sync)
    wanted = set(keys)
    got = {i: t for i, t in _decoded(path, keyframes_only=True) if i in wanted}
    return b"".join(got[i] for i in keys)


def frame_thumbnails(path: Path | str, samples: Sequence[int]) -> bytes:
    """The thumbnails of the samples ``samples`` (decode-order indices), in that order."""
    wanted = set(samples)
    got = {i: t for i, t in _decoded(path, keyframes_only=False) if i in wanted}
    return b"".join(got[i] for i in samples)


def assemble(
    video: Path | str,
    audio: Path | str,
    out: Path | str,
    *,
    first_sample: int,
    end_sample: int,
    excluded: Sequence[int] = (),
) -> None:
    """Mux samples ``[first_sample, end_sample)`` of ``video`` but ``excluded`` (decode times
    shifted so the first is 0, composition offsets kept) with every packet of ``audio`` as it
    is. Packet order is taken for sample order: true of files whose demuxer drops no sample."""
    options = {"use_editlist": "0"}
    with (
        av.open(str(video)) as vsrc,
        av.open(str(audio)) as asrc,
        av.open(str(out), "w", format="mp4", options=options) as dst,
    ):
        vin, ain = vsrc.streams.video[0], asrc.streams.audio[0]
        vout = dst.add_stream_from_template(vin)
        if vin.codec_context.name == "hevc":
            vout.codec_tag = "hvc1"
        aout = dst.add_stream_from_template(ain)
        packets = [p for p in vsrc.demux(vin) if p.size]
        skip = set(excluded)
        chosen = [
            p for i, p in enumerate(packets) if first_sample <= i < end_sample and i not in skip
        ]
        origin = chosen[0].dts or 0
        for p in chosen:
            assert p.pts is not None
            assert p.dts is not None
            p.pts, p.dts = p.pts - origin, p.dts - origin
            p.stream = vout
            dst.mux(p)
        for q in asrc.demux(ain):
            if q.dts is None:
                continue
            q.stream = aout
            dst.mux(q)
