"""WeChat's MediaContainer for the Node shim (real-wx.js), over PyAV.

    python mux-tracks.py probe FILE
    python mux-tracks.py export OUT FILE:KIND [FILE:KIND ...]

``probe`` prints the file's tracks as JSON (``[{"kind": "video"|"audio", "duration": s}]``).
``export`` writes OUT, an MP4 holding the first track of each KIND from each FILE, its packets
copied as they are (no re-encoding) with their timing from the track's start: what an export
of whole tracks gives, and all MediaContainer can do (a track has no start or offset).
"""

import json
import sys

import av


def probe(path: str) -> None:
    with av.open(path) as container:
        tracks = [
            {
                "kind": stream.type,
                "duration": float(stream.duration * stream.time_base) if stream.duration else 0.0,
            }
            for stream in container.streams
            if stream.type in ("video", "audio")
        ]
    json.dump(tracks, sys.stdout)


def export(out_path: str, sources: list[str]) -> None:
    inputs = []
    with av.open(out_path, "w", format="mp4") as out:
        pairs = []
        for source in sources:
            path, kind = source.rsplit(":", 1)
            container = av.open(path)
            inputs.append(container)
            stream = next(s for s in container.streams if s.type == kind)
            pairs.append((container, stream, out.add_stream_from_template(stream)))
        for container, stream, target in pairs:
            for packet in container.demux(stream):
                if packet.dts is None:
                    continue
                packet.stream = target
                out.mux(packet)
    for container in inputs:
        container.close()


def main() -> None:
    if sys.argv[1] == "probe":
        probe(sys.argv[2])
    else:
        export(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
