"""Run one command and report its wall time and peak memory as JSON: ``launch.py OUT CMD…``.

A child's maximum RSS as Linux reports it (``wait4``) starts from the high-water mark of the
process that started it: ``fork`` copies the parent's pages and ``vfork`` (which ``subprocess``
uses) hands the parent's high-water mark to the child at ``exec``. A benchmark that has decoded
a long output to check it would so lend the next child its own peak. This launcher is a fresh,
small interpreter (standard library only, no site packages), so what it lends is a few
megabytes; it writes ``{"wall_s", "max_rss_kb", "returncode"}`` to ``OUT``. The child's figure
is the largest of its own peak and that of every child it waited for (a forked decoder, the
encoders), not their sum.
"""

import json
import os
import subprocess
import sys
import time


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    began = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    with open(out, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "max_rss_kb": usage.ru_maxrss,  # KiB on Linux
                "returncode": os.waitstatus_to_exitcode(status),
            },
            f,
        )


if __name__ == "__main__":
    main()
