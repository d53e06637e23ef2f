"""The first module the job runner's fork server imports, and the only place it is imported.

Ctrl-C at a terminal reaches the whole process group. ``beatsync serve`` stops on it and its job
processes follow through their lifeline; the fork server must not die of it halfway through
importing the engine (the standard library protects it only once its imports are done), nor may
the job processes it forks print a ``KeyboardInterrupt`` each. So it ignores SIGINT from the
start, and the job processes inherit that.
"""

from __future__ import annotations

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
