"""Crash-safe file helpers: atomic replace writes, JSON reads with clear errors, an flock-based lock.

A file written with ``atomic_write_*`` is either the old complete file or the new complete file for any reader
and after any crash (core/fsio.py: temp file in the same folder + fsync + ``os.replace`` + fsync of the folder).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import time
from pathlib import Path
from types import TracebackType
from typing import Any

# The atomic write itself has one home, core/fsio.py (torch-free): core may not import amltui, so the helper
# lives on the side both can import, and this module re-exports it for the application layer.
from core.fsio import (
    FILE_MODE,
    TMP_SUFFIX,
    UnsafePath,
    atomic_write,
    atomic_write_bytes,
    fsync_dir,
    make_folder,
    open_append,
    open_nofollow,
    refuse_symlink,
    temp_prefix,
    touch,
)

__all__ = ["FILE_MODE", "TMP_SUFFIX", "FileLock", "UnsafePath", "atomic_write", "atomic_write_bytes",
           "atomic_write_json", "dumps_json", "fsync_dir", "make_folder", "open_append", "open_nofollow",
           "read_json", "refuse_symlink", "temp_prefix", "touch"]

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
        # The umask decides the mode (a group may share it); a planted symbolic link is refused (UnsafePath).
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o666)
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
