"""The one atomic-write helper of the whole tree (torch-free; amltui/app/fsutil.py re-exports it).

It lives in core/ because core may not import amltui while amltui may import core: checkpoints (core/train.py)
and the invariance cache (core/attacks/invariance_cache.py) need it as much as the run records do.

A file written here is either the old complete file or the new complete file for any reader and after any crash:
temp file in the same folder + fsync + ``os.replace`` + fsync of the folder.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def temp_prefix(path: Path) -> str:
    """Prefix of the temp files ``atomic_write`` creates beside ``path`` (to find leftovers)."""
    return f".{path.name}."


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (the directory entry lives in the folder, not in the file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (single-threaded): os.umask can only be read by setting it, which would race with
# threads creating files. mkstemp makes 0600 files; atomic writes widen them to what open() would create.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, durable: bool = True,
                 before_rename: Callable[[Path], None] | None = None) -> None:
    """Replace ``path`` with what ``write(file)`` writes, so that nobody ever sees a partial file.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), so a group-shared folder stays
    readable by the group. ``durable=False`` skips the fsyncs: readers still never see a torn file, but after a
    power loss the file may be missing or empty. ``before_rename(temp_path)`` runs between the write and the
    rename (a test hook). On any error the temp file is removed and the exception propagates unchanged.
    """
    path = Path(path)
    folder = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if before_rename is not None:
            before_rename(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)  # a half-written temp file would keep a full disk full
        raise
    if durable:
        fsync_dir(folder)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """``atomic_write`` of ``data``; a full disk is an OSError naming the folder, the file and the size."""
    path = Path(path)
    try:
        atomic_write(path, lambda f: f.write(data), durable=durable)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise OSError(exc.errno, f"no space left on {path.parent} writing {path.name} (needs ~"
                          f"{max(len(data) / 1e6, 0.1):.1f} MB); free some space there", str(path)) from None
        raise


def open_regular(path: Path) -> BinaryIO:
    """``open(path, "rb")`` that refuses at once what is not a regular file (a FIFO planted in place of a
    checkpoint or a log would block a plain open or read forever): opened with O_NONBLOCK, then fstat."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file (a FIFO, socket, device or folder); move it "
                          "out of the way", str(path))
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")
