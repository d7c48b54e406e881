"""Crash-safe file helpers: atomic replace writes, JSON reads with clear errors, an flock-based lock.

A file written with ``atomic_write_*`` is either the old complete file or the new complete file for any reader
and after any crash (temp file in the same folder + fsync + ``os.replace`` + fsync of the folder).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

TMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """Prefix of the temp files ``atomic_write_bytes`` creates beside ``path`` (to find leftovers)."""
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


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that nobody ever sees a partial file, even after a crash.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), so a group-shared runs folder
    stays readable by the group. ``durable=False`` skips the fsyncs: readers still never see a torn file, but
    after a power loss the file may be missing or empty (for files of brand-new runs, where that is cheaper
    than an fsync per file and leaves a run the readers show as damaged rather than a wrong one).
    """
    path = Path(path)
    folder = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        # Best effort: do not leave a half-written temp file behind on an ordinary error.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(exc.errno, f"no space left on {folder} writing {path.name} (needs ~"
                          f"{max(len(data) / 1e6, 0.1):.1f} MB); free some space there", str(path)) from None
        raise
    if durable:
        fsync_dir(folder)


def dumps_json(obj: Any) -> bytes:
    """Serialize like ``atomic_write_json`` does; raises TypeError/ValueError before any file is touched."""
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (serialized first, so bad data never reaches the disk)."""
    atomic_write_bytes(Path(path), dumps_json(obj), durable=durable)


def read_json(path: Path) -> Any:
    """Parse the JSON file at ``path``; any failure is a ValueError/OSError that names the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"JSON file not found: {path}", str(path)) from None
    except OSError as e:
        raise OSError(e.errno, f"cannot read JSON file {path}: {e.strerror}", str(path)) from e
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or delete the file") from e


class FileLock:
    """Exclusive inter-process lock: ``fcntl.flock`` on a separate lock file.

    The kernel drops an flock when its holder dies (even by SIGKILL), so a crashed process never leaves a
    stale lock. The holder's pid is written into the lock file only to make timeout errors informative.
    Not reentrant: a second FileLock on the same file in the same process waits like any other process.
    """

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def fd(self) -> int | None:
        """The descriptor holding the lock (a child given it via pass_fds holds the lock as well)."""
        return self._fd

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"FileLock {self.path} is already held by this object (it is not reentrant)")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides (a group may share it)
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(self._timeout_message()) from None
                    # Jittered backoff, capped low: waiters poll, so a long sleep would just waste lock time.
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.02)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # forget our pid; the lock file itself stays (deleting it would race)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder_pid(self) -> int | None:
        """Pid written by the current holder, if any (advisory: only for messages)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _timeout_message(self) -> str:
        pid = self.holder_pid()
        holder = f"process {pid}" if pid is not None else "another process (pid unknown)"
        return (
            f"timed out after {self.timeout:g} s waiting for the lock file {self.path}, held by {holder}; "
            "wait for it to finish or stop that process (a dead process never holds the lock)"
        )

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
