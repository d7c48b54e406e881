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
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Any

# The atomic write itself has one home, core/fsio.py (torch-free): core may not import amltui, so the helper
# lives on the side both can import, and this module re-exports it for the application layer.
from core.fsio import FILE_MODE, TMP_SUFFIX, atomic_write, atomic_write_bytes, fsync_dir, temp_prefix

__all__ = ["FILE_MODE", "TMP_SUFFIX", "FileLock", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "dumps_json", "fsync_dir", "parse_json", "read_bytes_bounded", "read_json",
           "read_tail_lines", "temp_prefix"]

def dumps_json(obj: Any) -> bytes:
    """Serialize like ``atomic_write_json`` does; raises TypeError/ValueError before any file is touched."""
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def atomic_write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (serialized first, so bad data never reaches the disk)."""
    atomic_write_bytes(Path(path), dumps_json(obj), durable=durable)


# Bounds of every JSON file amltui reads (run.json, config.json, progress.json, the index, metrics lines): a
# file past them is damage, never a reason to hang, swap or overflow the stack (docs/reliability.md).
MAX_JSON_BYTES = 64 * 2**20  # a run record is a few KiB; the index of 100,000 runs is well below this
MAX_JSON_DEPTH = 64  # the deepest structure amltui writes is 4 levels


def read_bytes_bounded(path: Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file at ``path``; anything else is an OSError naming the file.

    Opened with O_NONBLOCK so that a FIFO or a device planted in place of a run file is refused at once instead
    of blocking the reader forever; a file larger than ``limit`` bytes is refused before it is read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"file not found: {path}", str(path)) from None
    except OSError as e:
        raise OSError(e.errno, f"cannot read {path}: {e.strerror}", str(path)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{path} is a folder, not a file", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file (a FIFO, socket or device); "
                          "move it out of the way", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"{path} is {info.st_size / 2**20:.1f} MiB, more than amltui reads "
                          f"({limit / 2**20:.0f} MiB); move it out of the way", str(path))
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):  # the file may grow after fstat: stop at the bound anyway
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"{path} grew past {limit / 2**20:.0f} MiB while read", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_tail_lines(path: Path, count: int, limit: int = MAX_JSON_BYTES) -> tuple[list[bytes], bool]:
    """The last ``count`` lines of the regular file at ``path`` (at most ``limit`` bytes read, from the end), and
    whether earlier lines were left unread. Refuses what ``read_bytes_bounded`` refuses, without blocking."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot read {path}: {e.strerror}", str(path)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file; move it out of the way", str(path))
        end = start = info.st_size
        data = b""
        while start > 0 and data.count(b"\n") <= count and end - start < limit:
            step = min(1 << 16, start, limit - (end - start))
            start -= step
            data = os.pread(fd, step, start) + data
        lines = data.splitlines()
        cut = start > 0 or len(lines) > count
        if start > 0 and lines:
            lines = lines[1:]  # the first line read may be cut in the middle
        return lines[-count:] if count else [], cut
    finally:
        os.close(fd)


def json_depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``value`` nests lists and objects no deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def parse_json(raw: bytes | str, what: str = "the text") -> Any:
    """``json.loads`` that is total: bad bytes, bad JSON, too deep a nesting are one ValueError naming ``what``."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} is not valid JSON ({e}); fix or delete the file") from None
    except RecursionError:
        raise ValueError(f"{what} nests deeper than amltui reads ({MAX_JSON_DEPTH} levels); fix or delete "
                         "the file") from None
    if not json_depth_ok(value):
        raise ValueError(f"{what} nests deeper than amltui reads ({MAX_JSON_DEPTH} levels); fix or delete "
                         "the file")
    return value


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON file at ``path``; any failure is a ValueError/OSError that names the file.

    Total: a FIFO or device is refused without blocking, a file over ``limit`` bytes or nested deeper than
    MAX_JSON_DEPTH is refused, never read into memory or parsed into a RecursionError.
    """
    return parse_json(read_bytes_bounded(path, limit), str(path))


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
