"""A large output written beside its final name and put in place in one atomic step.

Linux's ext4 (with its default ``auto_da_alloc``) queues a file's dirty pages for writing, and
waits until all of them are queued, in two cases meant to protect programs that replace files
without ``fsync``: when a file that was truncated to zero bytes is closed, and when a file is
renamed over another. For a video of a few hundred megabytes each costs the job about 0.07 s,
for data the kernel writes back soon anyway. So the part file is created by its writer (not
made empty first and then opened with ``O_TRUNC``), and an existing output is swapped with the
new one (``renameat2`` with ``RENAME_EXCHANGE``, as atomic as a rename) and then deleted:
readers see the old file or the new one, never neither. Where the swap is not available,
:func:`publish` renames as usual.

What this gives up: ext4's early writeback also makes it less likely that a power loss soon
after a replace leaves the new file empty. The output was never ``fsync``-ed (that would cost
seconds): it is on disk once the kernel has written it back, within about half a minute.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["part_path", "publish"]

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# The file system or the kernel cannot swap (or the target went away meanwhile): rename instead.
_CANNOT_SWAP = frozenset({errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EXDEV})

_Renameat2 = Callable[[int, bytes, int, bytes, int], int]


def part_path(out: Path) -> Path:
    """A fresh hidden name beside ``out`` for the file being written; not created here.

    The writer creates it. The name carries 64 random bits, so no other file has it; the path
    is absolute, so that FFmpeg never reads a name such as ``take:2.mp4`` as a protocol.
    """
    return out.absolute().with_name(f".{out.name}.{secrets.token_hex(8)}.part")


def publish(part: Path, out: Path) -> None:
    """Put ``part`` at ``out`` in one atomic step, replacing what is there."""
    if not _swap(part, out):
        os.replace(part, out)
        return
    try:
        part.unlink()  # the previous output, now under the part file's name
    except OSError as exc:
        log.warning("could not delete the previous output, now at %s: %s", part, exc)


def _swap(a: Path, b: Path) -> bool:
    """Exchange the names of two regular files; ``False`` when ``b`` is not a regular file or
    the names cannot be exchanged here."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    try:
        if not stat.S_ISREG(os.lstat(b).st_mode):
            return False
    except OSError:
        return False  # nothing there, or nothing to look at: the rename says which
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _CANNOT_SWAP:
        return False
    raise OSError(code, os.strerror(code), str(b))


@functools.cache
def _renameat2() -> _Renameat2 | None:
    """glibc's ``renameat2`` (2.28 and later), or ``None`` off Linux or without it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    path, fd = ctypes.c_char_p, ctypes.c_int
    function.argtypes = [fd, path, fd, path, ctypes.c_uint]
    function.restype = ctypes.c_int
    renameat2: _Renameat2 = function
    return renameat2
