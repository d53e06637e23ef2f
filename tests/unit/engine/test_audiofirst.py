"""The audio-first run against the server path on the same generated pairs.

The test kit's reference client makes what a phone sends (the re-wrapped sound, the manifest, the
keyframes' thumbnails, and the frames the run asks for); the server path renders the video. Both
must cut at the same frames, copy the same samples and carry the same audio packets. A nudge
(:func:`retrack`) remakes only the track: the packets the whole run writes for that mapping.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from beatsync.engine import sync
from beatsync.engine.audiofirst import AudioFirstResult, sync_audio_first
from beatsync.engine.cut.clientframes import KEY_BATCH, ClientFrames, split_thumbnails
from beatsync.engine.cut.picture import FileFrames, Thumb
from beatsync.engine.cut.trim import find_cut
from beatsync.engine.media.manifest import parse_manifest
from beatsync.engine.media.movtime import video_timeline
from beatsync.engine.media.probe import probe
from beatsync.engine.output.report import report_dict
from beatsync.engine.pipeline import SyncOptions
from beatsync.engine.retrack import retrack, retracked_report
from beatsync.testkit import BuiltCase, build_case, case_named
from beatsync.testkit.audiofirst import (
    assemble,
    extract_audio,
    frame_thumbnails,
    keyframe_thumbnails,
    video_manifest,
)
from beatsync.testkit.measure import sync_errors, video_packets_copied


class Phone:
    """What the client holds and sends for one case; counts the frames it was asked for.

    ``upfront``: the keyframes' thumbnails go with the job (else every picture is asked for).
    """

    def __init__(self, case: BuiltCase, folder: Path, *, upfront: bool = False) -> None:
        self.case = case
        self.audio = folder / f"{case.spec.name}.sound.m4a"
        extract_audio(case.dance, self.audio)
        self.manifest = parse_manifest(video_manifest(case.dance))
        video = self.manifest.video
        keys = list(video.sync) if video.sync is not None else list(range(video.sample_count))
        self.keyframes: dict[int, Thumb] = {}
        if upfront:
            data = keyframe_thumbnails(case.dance, video.sync, video.sample_count)
            self.keyframes = split_thumbnails(data, keys)
        self.asked: list[tuple[int, ...]] = []

    def fetch(self, samples: tuple[int, ...]) -> dict[int, Thumb]:
        self.asked.append(samples)
        return split_thumbnails(frame_thumbnails(self.case.dance, samples), samples)

    def run(self, out: Path) -> AudioFirstResult:
        return sync_audio_first(
            self.audio,
            self.case.bgm,
            self.manifest,
            out,
            keyframes=self.keyframes,
            fetch=self.fetch,
        )


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def _audio_packets(path: Path) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as container:
        return [(bytes(p), p.pts) for p in container.demux(container.streams.audio[0]) if p.size]


@pytest.mark.parametrize(
    ("name", "edge", "upfront"),
    [
        ("black-tail", "end", False),
        ("black-tail", "end", True),
        ("frozen-tail", "end", False),
        ("black-head", "start", False),
        ("small-hevc-portrait", None, False),
    ],
)
def test_the_audio_first_cut_is_the_server_paths(
    kit_dir: Path, tmp_path: Path, name: str, edge: str | None, upfront: bool
) -> None:
    case = build_case(case_named(name), kit_dir)
    server = sync(case.dance, case.bgm, tmp_path / "server.mp4")
    phone = Phone(case, tmp_path, upfront=upfront)
    done = phone.run(tmp_path / "audio.m4a")

    assert done.sync.cut == server.cut
    asked = [s for request in phone.asked for s in request]
    if edge is not None:
        assert getattr(server.cut, f"{edge}_reason") == "picture"
        assert phone.asked  # frames of the edge's groups of pictures were asked for
    elif not upfront:
        # A clean span: its first keyframes and its last two frames in one request, then the
        # frames of the head's group of pictures (15 here: the HEVC keyframe is shown after the
        # span's start), not the video's 360 frames.
        assert len(phone.asked) == 2
        assert len(phone.asked[0]) <= KEY_BATCH + 2
        assert len(asked) == KEY_BATCH + 2 + 15
    out, mine = server.output, done.sync.output
    assert (mine.video_start, mine.video_end, mine.first_frame_time, mine.frames) == (
        out.video_start,
        out.video_end,
        out.first_frame_time,
        out.frames,
    )
    run = done.run
    source = _video_packets(case.dance)
    kept = [i for i in range(run.first_sample, run.end_sample) if i not in set(run.excluded)]
    assert [source[i] for i in kept] == _video_packets(Path(server.output.path))
    if not run.excluded:
        copied = video_packets_copied(case.dance, server.output.path)
        assert copied
        assert (copied.source_start, copied.packets) == (run.first_sample, len(kept))
    assert _audio_packets(done.audio_path) == _audio_packets(Path(server.output.path))

    assembled = tmp_path / "assembled.mp4"
    assemble(
        case.dance,
        done.audio_path,
        assembled,
        first_sample=run.first_sample,
        end_sample=run.end_sample,
        excluded=run.excluded,
    )
    errors = sync_errors(assembled, case)
    assert max(abs(e) for e in errors) <= 1.0, errors
    assert errors == pytest.approx(sync_errors(server.output.path, case), abs=0.002)


@pytest.mark.parametrize("name", ["small-black-tail", "small-hevc-portrait"])
def test_client_frames_are_the_files_frames(kit_dir: Path, tmp_path: Path, name: str) -> None:
    """The same frames at the same times, for any stretch: keyframes, all, the last two."""
    case = build_case(case_named(name), kit_dir)
    phone = Phone(case, tmp_path)
    timeline = video_timeline(phone.manifest.video, phone.manifest.movie_timescale)
    client = ClientFrames(timeline, phone.keyframes, phone.fetch)
    server = FileFrames(probe(case.dance, require_video=True))
    for start, end in ((0.0, 2.0), (3.41, 5.2), (9.9, 10.9), (12.0, 99.0), (4.0, 4.0)):
        for kind in ("keyframes", "frames", "last_two"):
            theirs = list(getattr(server, kind)(start, end))
            ours = list(getattr(client, kind)(start, end))
            assert [t for t, _ in ours] == [t for t, _ in theirs], (kind, start, end)
            assert all((a == b).all() for (_, a), (_, b) in zip(ours, theirs, strict=True))


def test_without_the_frames_the_cut_ignores_the_picture(kit_dir: Path, tmp_path: Path) -> None:
    case = build_case(case_named("small-black-tail"), kit_dir)
    phone = Phone(case, tmp_path)
    done = sync_audio_first(
        phone.audio, case.bgm, phone.manifest, tmp_path / "a.m4a", keyframes=phone.keyframes
    )
    result = done.sync
    expected = find_cut(result.dance, result.bgm, result.mapping, result.alignment.music,
                        picture=False)  # fmt: skip
    assert result.cut == expected
    assert result.cut.end_reason != "picture"


def test_an_edit_goes_audio_first_in_its_pieces(kit_dir: Path, tmp_path: Path) -> None:
    case = build_case(case_named("small-edit"), kit_dir)
    server = sync(case.dance, case.bgm, tmp_path / "server.mp4")
    done = Phone(case, tmp_path).run(tmp_path / "audio.m4a")

    assert len(server.pieces) == len(case.truth.pieces) > 1
    assert done.sync.pieces == server.pieces
    assert done.sync.cut == server.cut
    # The same spliced track, packet for packet, as the server render lays under the picture.
    assert _audio_packets(done.audio_path) == _audio_packets(Path(server.output.path))


@pytest.mark.parametrize("name", ["small-black-tail", "small-edit"])
def test_a_nudge_remakes_only_the_track(kit_dir: Path, tmp_path: Path, name: str) -> None:
    case = build_case(case_named(name), kit_dir)
    phone = Phone(case, tmp_path)
    first = phone.run(tmp_path / "first.m4a")
    nudge = 30.0
    parts = first.sync.pieces if len(first.sync.pieces) > 1 else None
    # The whole run with the answer fixed and nudged, cut where the first run cut.
    options = SyncOptions(
        mapping=first.sync.alignment.mapping,
        pieces=parts,
        nudge_ms=nudge,
        start=first.sync.cut.start,
        end=first.sync.cut.end,
    )
    whole = sync_audio_first(
        phone.audio, case.bgm, phone.manifest, tmp_path / "whole.m4a",
        keyframes={}, fetch=phone.fetch, options=options,
    )  # fmt: skip
    assert whole.run == first.run

    done = retrack(
        phone.audio,
        case.bgm,
        phone.manifest,
        tmp_path / "nudged.m4a",
        run=first.run,
        mapping=first.sync.mapping.nudged(nudge),
        pieces=tuple(p.nudged(nudge) for p in parts) if parts else None,
    )
    assert _audio_packets(tmp_path / "nudged.m4a") == _audio_packets(whole.audio_path)
    assert _audio_packets(tmp_path / "nudged.m4a") != _audio_packets(first.audio_path)
    assert done.output.frames == first.sync.output.frames
    assert done.output.video_start == first.sync.output.video_start
    assert abs(done.audio_duration - whole.audio_duration) < 1e-9

    out = tmp_path / "nudged.mp4"
    assemble(case.dance, done.output.path, out, first_sample=first.run.first_sample,
             end_sample=first.run.end_sample)  # fmt: skip
    late = sync_errors(out, case)
    assert all(abs(e - nudge) <= 1.0 for e in late), late

    report = retracked_report(
        report_dict(first.sync),
        done,
        mapping=first.sync.mapping.nudged(nudge),
        pieces=tuple(p.nudged(nudge) for p in parts) if parts else None,
    )
    assert report["adjustment"] == {
        "differs": True, "kind": "nudge", "candidate": None, "nudge_ms": nudge,
    }  # fmt: skip
    assert report["mapping"]["offset_s"] == pytest.approx(
        first.sync.mapping.offset - nudge / 1000, abs=1e-6
    )
    for piece, given in zip(report["pieces"], first.sync.parts, strict=True):
        assert piece["offset_s"] == pytest.approx(given.mapping.offset - nudge / 1000, abs=1e-6)
    assert report["cut"] == report_dict(first.sync)["cut"]
    assert report["output"]["size_bytes"] == (tmp_path / "nudged.m4a").stat().st_size
