"""Decoded pictures of a video for the Node shim of WeChat's VideoDecoder (real-decoder.js).

    python decode-frames.py VIDEO

Reads requests from stdin, one a line: ``SEEK_MS COUNT``. For each it seeks to the keyframe at
or before SEEK_MS and writes up to COUNT pictures from there, in presentation order, to stdout:
a count (uint32), then per picture a header (pts in ms as float64, width, height as uint32,
little-endian) and its RGBA bytes. Times are the demuxer's (edit list applied), as a player
shows them.
"""

import struct
import sys

import av


def main() -> None:
    out = sys.stdout.buffer
    with av.open(sys.argv[1]) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        for line in sys.stdin:
            seek_ms, count = float(line.split()[0]), int(line.split()[1])
            container.seek(int(seek_ms / 1000 / base), stream=stream, backward=True)
            frames = []
            for frame in container.decode(stream):
                frames.append(frame)
                if len(frames) >= count:
                    break
            out.write(struct.pack("<I", len(frames)))
            for frame in frames:
                rgba = frame.to_ndarray(format="rgba")
                pts_ms = float(frame.pts * base * 1000) if frame.pts is not None else -1.0
                out.write(struct.pack("<dII", pts_ms, frame.width, frame.height))
                out.write(rgba.tobytes())
            out.flush()


if __name__ == "__main__":
    main()
