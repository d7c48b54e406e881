"""The one atomic-write helper of the whole tree (torch-free; amltui/app/fsutil.py re-exports it).

It lives in core/ because core may not import amltui while amltui may import core: checkpoints (core/train.py)
and the invariance cache (core/attacks/invariance_cache.py) need it as much as the run records do.

A file written here is either the old complete file or the new complete file for any reader and after any crash:
temp file in the same folder + fsync + ``os.replace`` + fsync of the folder.

A runs folder may be shared by a group, so nothing amltui writes or locks there is followed out of it: every
open for writing, appending or locking goes through ``open_nofollow`` (O_NOFOLLOW on the file, regular files
only), atomic writes refuse a symlink where the file should be, and folders amltui makes or writes into go through
``refuse_symlink`` / ``make_folder``. A refusal is ``UnsafePath`` (an OSError naming the file and the fix).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

TMP_SUFFIX = ".tmp"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class UnsafePath(OSError):
    """A file or folder amltui would write through is a symbolic link or not a regular file: nothing was written."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message names the file already


def _unsafe(path: Path, what: str) -> UnsafePath:
    return UnsafePath(errno.ELOOP, f"{path} is {what}; amltui never writes or locks through one (in a shared "
                      "runs folder it could overwrite someone's file); remove it or move it out of the way, "
                      "then try again", str(path))


def refuse_symlink(path: Path) -> None:
    """UnsafePath if ``path`` itself is a symbolic link (a run folder, ``.slots``, a cache folder, a file)."""
    if os.path.islink(path):
        raise _unsafe(Path(path), "a symbolic link")


def make_folder(path: Path, *, parents: bool = False) -> Path:
    """Create ``path`` if needed and check it is a real folder, not a symbolic link to one elsewhere."""
    path = Path(path)
    refuse_symlink(path)
    path.mkdir(parents=parents, exist_ok=True)
    refuse_symlink(path)  # planted between the check and mkdir: mkdir(exist_ok) accepts a link to a folder
    return path


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that refuses a symbolic link as the file itself and anything but a regular file.

    O_NONBLOCK keeps a FIFO planted in place of the file from blocking the open (it is then refused); for a
    regular file it changes nothing. The mode is narrowed by the umask, as with ``open``.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _unsafe(Path(path), "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing
            raise _unsafe(Path(path), "not a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _unsafe(Path(path), "not a regular file")
    return fd


def open_append(path: Path, *, binary: bool = False) -> IO:
    """``open(path, "a")`` through ``open_nofollow`` (logs, metrics.jsonl, worker.out, scheduler.log)."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "ab") if binary else os.fdopen(fd, "a", encoding="utf-8")


def touch(path: Path) -> None:
    """``Path.touch`` that never follows a link (a planted link would move a stranger's file's mtime)."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


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
    rename (a test hook). A symbolic link at ``path`` is refused (UnsafePath). On any error the temp file is
    removed and the exception propagates unchanged.
    """
    path = Path(path)
    folder = path.parent
    # The rename would replace a link, not its target, but a link where amltui's file should be was planted:
    # refusing it says so (mkstemp's O_EXCL never follows one either).
    refuse_symlink(path)
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
