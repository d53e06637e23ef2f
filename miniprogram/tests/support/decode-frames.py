"""Decoded pictures of a video for the Node shim of WeChat's VideoDecoder (real-decoder.js).

    python decode-frames.py VIDEO SEEK_MS COUNT

Seeks to the keyframe at or before SEEK_MS and writes up to COUNT pictures from there, in
presentation order, to stdout: per picture a header (pts in ms as float64, width, height as
uint32, little-endian) and its RGBA bytes. Times are the demuxer's (edit list applied), as a
player shows them.
"""

import struct
import sys

import av


def main() -> None:
    path, seek_ms, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    out = sys.stdout.buffer
    with av.open(path) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        container.seek(int(seek_ms / 1000 / base), stream=stream, backward=True, any_frame=False)
        for n, frame in enumerate(container.decode(stream)):
            if n >= count:
                break
            rgba = frame.to_ndarray(format="rgba")
            pts_ms = float(frame.pts * base * 1000) if frame.pts is not None else -1.0
            out.write(struct.pack("<dII", pts_ms, frame.width, frame.height))
            out.write(rgba.tobytes())
    out.flush()


if __name__ == "__main__":
    main()
