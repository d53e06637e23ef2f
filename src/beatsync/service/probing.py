"""Reading an upload's media facts in a process of its own.

The demuxers are C (FFmpeg, through PyAV): a hostile or broken file that crashes one must take
down a helper process, never the API. Each API process keeps a few reader processes, started on
first need and kept between files, sends one a spool path at a time and gets back the probe's
facts or its coded error. A reader that dies or overruns its time is replaced
for the next file; the file it was reading is refused as ``INVALID_FORMAT``.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from beatsync.engine import BeatSyncError, MediaInfo, probe
from beatsync.engine.media.probe import open_media

from .codes import CODES
from .errors import ServiceError

__all__ = ["MediaReader", "ReaderPool", "Reading", "read_file", "read_here", "read_media"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0
"""Longest a reader may take over one file (a probe takes milliseconds)."""


Reading = Callable[[str], tuple[Any, ...]]
"""What the reader process runs on each path: ``("ok", info, streams)`` or
``("error", code, detail)``."""


class MediaReader:
    """One reader process, started on first use and replaced when it dies or hangs.

    ``reading`` is what the process runs on each path (:func:`read_file`; a module-level
    function, as the new process imports it by name).
    """

    def __init__(self, reading: Reading | None = None) -> None:
        self._reading = reading or read_file
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    def read(self, path: Path, *, timeout: float = READ_TIMEOUT_S) -> tuple[MediaInfo, int]:
        """The probe's facts about ``path`` and its stream count, or the probe's coded error
        (a :class:`ServiceError` with an engine code; ``INVALID_FORMAT`` when the reader died)."""
        with self._lock:
            conn = self._started()
            conn.send(str(path))
            if not conn.poll(timeout):
                self._stop()
                raise ServiceError("INVALID_FORMAT", f"reading the file took over {timeout:g} s")
            try:
                outcome: tuple[Any, ...] = conn.recv()
            except (EOFError, OSError):
                code = self._stop()
                log.warning("the media reader stopped (exit code %s) on an upload", code)
                raise ServiceError(
                    "INVALID_FORMAT", "the file could not be read: it stopped the media reader"
                ) from None
        if outcome[0] == "error":
            _, code, detail = outcome
            raise ServiceError(code if code in CODES else "PROCESSING_FAILED", detail)
        _, info, streams = outcome
        return info, streams

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _started(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._stop()
        # Spawned, not forked: a fork of a threaded server is unsafe, and the fork server
        # belongs to the job runner, whose preloads must be set before it starts.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=_serve, args=(theirs, self._reading), name="beatsync-media-reader"
        )
        process.daemon = True
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        return ours

    def _stop(self) -> int | None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.join(0.5)
        if process.is_alive():
            process.kill()
            process.join(5)
        return process.exitcode


def _serve(conn: Connection, reading: Reading) -> None:
    """The reader process: answer paths until the API process closes its end."""
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(reading(path))


def read_file(path: str) -> tuple[Any, ...]:
    """The probe's facts about ``path`` and its stream count, as the reader process sends them."""
    try:
        info = probe(path, require_audio=False)
        with open_media(path) as container:
            streams = len(container.streams)
    except BeatSyncError as exc:
        return ("error", exc.code, exc.message)
    except Exception as exc:  # a reader that throws is one that could not read the file
        return ("error", "INVALID_FORMAT", f"the file could not be read: {type(exc).__name__}")
    return ("ok", info, streams)


def read_here(path: Path) -> tuple[MediaInfo, int]:
    """:func:`read_file` in this process, for a process that is already the file's own (a
    job's run): the probe's facts and stream count, or its coded :class:`ServiceError`."""
    outcome = read_file(str(path))
    if outcome[0] == "error":
        _, code, detail = outcome
        raise ServiceError(code if code in CODES else "PROCESSING_FAILED", detail)
    return outcome[1], outcome[2]


class ReaderPool:
    """Up to ``size`` readers at once, kept between files: one slow or hostile file holds up
    one reader, not every upload of the process."""

    def __init__(self, size: int = 4, reading: Reading | None = None) -> None:
        self._reading = reading
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.LifoQueue[MediaReader] = queue.LifoQueue()

    def read(self, path: Path, *, timeout: float = READ_TIMEOUT_S) -> tuple[MediaInfo, int]:
        """:meth:`MediaReader.read` on an idle reader (a new one when none is idle)."""
        with self._slots:
            try:
                reader = self._idle.get_nowait()
            except queue.Empty:
                reader = MediaReader(self._reading)
            try:
                return reader.read(path, timeout=timeout)
            finally:
                self._idle.put(reader)

    def close(self) -> None:
        """Stop the idle readers (one busy now stops when its file is done)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


_readers = ReaderPool()


def read_media(path: Path, *, timeout: float = READ_TIMEOUT_S) -> tuple[MediaInfo, int]:
    """The media facts of ``path`` from this process's readers (:class:`ReaderPool`)."""
    return _readers.read(path, timeout=timeout)
