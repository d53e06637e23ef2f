"""Run one call in a forked child process, beside the caller, and collect its result.

Decoding audio is bound to the interpreter lock (PyAV's work per 1024-sample frame is small next
to the Python around it), so two decoding threads run no faster than one; two processes use two
cores. The child is forked, so it starts in a millisecond with everything already imported, and
sends its result back through a pipe with pickle's out-of-band buffers: a NumPy array crosses
as its raw bytes and is not copied again on arrival. An exception in the child is raised again
in the caller.

The child only computes and answers: it logs nothing (a lock that another thread held at the
fork would stay locked in the child) and leaves by ``os._exit``. Forking is used only from the
main thread on Linux; elsewhere (another OS, or ``sync()`` called from a host's worker thread,
where other threads may be inside FFmpeg at the moment of the fork) the call runs in the
caller's process when its result is asked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import struct
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import ProcessingError

__all__ = ["ForkedCall", "can_fork"]

T = TypeVar("T")

_LENGTH = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1


def can_fork() -> bool:
    """Whether a :class:`ForkedCall` made here runs in a child: on Linux, from the main thread."""
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


class ForkedCall(Generic[T]):
    """``fn(*args)`` running in a forked child from construction on.

    Call :meth:`result` once to wait for it, and :meth:`close` to reap the child (or to abandon
    the call: the child is killed). Use it as a context manager to close it whatever happens.
    The child also dies with the caller's process, so it never outlives a killed job.
    """

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._fn, self._args = fn, args
        self._pid: int | None = None
        self._forked = False
        self._payload: tuple[bytes, list[bytearray]] | BaseException | None = None
        self._reader: threading.Thread | None = None
        self._taken = False
        if not can_fork():
            return
        parent = os.getpid()
        prctl = _prctl()  # resolved here: the child makes no dynamic-linker calls
        read, write = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns about forking a process with threads; the child touches
                # none of the parent's other threads' state (it computes and exits).
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:  # no process to be had: the call runs here when asked for
            os.close(read)
            os.close(write)
            return
        if pid == 0:  # the child: never returns
            os.close(read)
            _child(write, parent, prctl, fn, args)
        os.close(write)
        self._pid, self._forked = pid, True
        # The answer is read as it comes, on a thread (reads release the GIL), so a large one
        # has crossed the pipe by the time the caller asks for it.
        reader = threading.Thread(
            target=self._read, args=(read,), name="beatsync-forked", daemon=True
        )
        try:
            reader.start()
        except BaseException:
            os.close(read)
            self._reap(kill=True)
            raise
        self._reader = reader

    def _read(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "rb", closefd=True) as pipe:
                self._payload = _receive(pipe)
        except BaseException as exc:  # MemoryError under a job's memory limit, a short read…
            self._payload = exc

    @property
    def forked(self) -> bool:
        """Whether a child runs the call (otherwise :meth:`result` runs it here)."""
        return self._forked

    def __enter__(self) -> ForkedCall[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def result(self) -> T:
        """The call's return value; its exception raised here if it failed. Once only."""
        if self._taken:
            raise RuntimeError("the result was taken already, or the call closed")
        self._taken = True
        if not self._forked:
            return self._fn(*self._args)
        assert self._reader is not None
        self._reader.join()
        self._reader = None
        # The child is reaped by close(): its own exit takes a few milliseconds not waited for.
        payload, self._payload = self._payload, None
        if isinstance(payload, MemoryError):
            raise payload  # the job's memory limit: reported as such
        try:
            if isinstance(payload, BaseException) or payload is None:
                raise payload or EOFError("the helper process sent nothing")
            header, buffers = payload
            ok, value = pickle.loads(header, buffers=buffers)
        except MemoryError:
            raise
        except Exception as exc:  # a short read, or an answer that cannot be unpickled
            raise ProcessingError(f"a helper process failed: {exc}") from exc
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        result: T = value
        return result

    def close(self) -> None:
        """Reap the child; if its result was not taken, kill it first and free the pipe."""
        self._taken = True
        self._reap(kill=self._reader is not None)  # the reader then meets the end of the pipe
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        self._payload = None

    def _reap(self, *, kill: bool) -> None:
        if self._pid is None:
            return
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._pid = None


def _child(fd: int, parent: int, prctl: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    code = 0
    try:
        _die_with(parent, prctl)
        logging.disable(logging.CRITICAL)
        try:
            payload: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # sent to the caller, raised there
            payload = (False, exc)
        with os.fdopen(fd, "wb", closefd=True) as pipe:
            try:
                _send(pipe, payload)
            except (
                pickle.PicklingError,
                TypeError,
                AttributeError,
                ValueError,
                BufferError,
            ) as exc:
                _send(pipe, (False, ProcessingError(f"a helper's result cannot be sent: {exc}")))
    except BaseException:
        code = 1  # the caller sees a short read
    finally:
        # No atexit handlers, no flushing of buffers inherited from the parent.
        os._exit(code)


def _prctl() -> Any:
    """libc's ``prctl``, or ``None`` where it cannot be found."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl: Any) -> None:
    """Ask Linux to kill this child when the parent's thread ends; give up if already gone."""
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _send(pipe: Any, payload: tuple[bool, Any]) -> None:
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(payload, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    pipe.write(_LENGTH.pack(len(header)) + _LENGTH.pack(len(views)))
    for view in views:
        pipe.write(_LENGTH.pack(view.nbytes))
    pipe.write(header)
    for view in views:
        pipe.write(view)


def _receive(pipe: Any) -> tuple[bytes, list[bytearray]]:
    header_len, count = _LENGTH.unpack(_read(pipe, 8))[0], _LENGTH.unpack(_read(pipe, 8))[0]
    sizes = [_LENGTH.unpack(_read(pipe, 8))[0] for _ in range(count)]
    header = _read(pipe, header_len)
    buffers = []
    for size in sizes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = pipe.readinto(view[got:])
            if not n:
                raise EOFError("the helper process ended early")
            got += n
        buffers.append(buffer)
    return header, buffers


def _read(pipe: Any, size: int) -> bytes:
    data: bytes = pipe.read(size)
    if len(data) != size:
        raise EOFError("the helper process ended early")
    return data
