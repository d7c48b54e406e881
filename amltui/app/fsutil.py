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

from amltui.app.errors import UserError

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
           "parse_json", "read_bytes_bounded", "read_json", "read_tail_lines", "refuse_symlink", "temp_prefix",
           "touch", "check_runs_folder", "check_output_path", "refuse_planted_links"]

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


# ---- links planted in a shared runs folder -----------------------------------------------------------------
# What amltui keeps at the top of a runs folder: none of these may be a symbolic link (files or folders).
RUNS_FOLDER_ENTRIES = ("store.json", "store.json.lock", "scheduler.log", ".slots", ".schedulers", "cache", "slurm",
                       "reports")
LOCK_FOLDERS = (".slots", ".schedulers")  # folders of lock files: no entry in them may be a link either


def refuse_planted_links(folder: Path) -> None:
    """UnsafePath naming the first symbolic link in a run folder (amltui never makes one: it was planted).

    Checked before a command touches a run, so nothing is written at all; the writes themselves refuse links
    too (open_nofollow), which also covers a link planted while the command runs.
    """
    refuse_symlink(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return  # a missing folder is the readers' to report (damaged)
    for entry in entries:
        if entry.is_symlink():
            refuse_symlink(Path(entry.path))


def check_runs_folder(runs_dir: Path) -> None:
    """UnsafePath if one of amltui's own files or folders at the top of ``runs_dir`` (or a lock file in
    .slots / .schedulers) is a symbolic link. The runs folder itself may be a link: the user chose it."""
    runs_dir = Path(runs_dir)
    for name in RUNS_FOLDER_ENTRIES:
        refuse_symlink(runs_dir / name)
    for name in LOCK_FOLDERS:
        if (runs_dir / name).is_dir():
            refuse_planted_links(runs_dir / name)


# ---- where a user's --out may write ------------------------------------------------------------------------
_RUNS_FOLDER_FILES = ("store.json", "scheduler.log")  # and their .lock / .corrupt-* / temp companions


def check_output_path(out: Path, runs_dir: Path, *, mkdir: bool = False, option: str = "--out") -> Path:
    """Check a user's output path before anything is written; returns it. Raises UserError.

    Refused: a path inside a run folder, the store's files (store.json, its lock and backups), scheduler.log and
    the runs folder's internals (dot-folders, cache/, slurm/, reports/sweeps/), wherever a link makes it land.
    A missing parent folder is made only inside the current folder, or anywhere with ``mkdir``.
    """
    out = Path(out)
    where = _amltui_file(out.resolve(), Path(runs_dir).resolve())
    if where is not None:
        raise UserError(f"{option} {out} would overwrite {where}",
                        f"write it outside the runs folder (e.g. {option} ./{out.name}) or under its reports/ folder")
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"cannot write {option} {out}: {parent} is a file, not a folder", "give another path")
    if not parent.is_dir():
        if not (mkdir or parent.is_relative_to(Path.cwd().resolve())):
            raise UserError(f"{option} {out}: the folder {parent} does not exist",
                            "create it first, or pass --mkdir to let amltui create it")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder of the path should be, no permission, …
            raise UserError(f"cannot write {option} {out}: cannot create {parent} ({exc.strerror})",
                            "give another path") from None
    return out


def _amltui_file(target: Path, runs: Path) -> str | None:
    """What of amltui's ``target`` is (a run's files, the index, internals), or None for a free path."""
    if not target.is_relative_to(runs) or target == runs:
        return None if target != runs else f"the runs folder {runs} itself"
    parts = target.relative_to(runs).parts
    top = parts[0]
    if len(parts) == 1:
        if any(top == name or top.startswith(name + ".") for name in _RUNS_FOLDER_FILES) or top.startswith("."):
            return f"amltui's own file {target} (the run index, its lock or log)"
        if (runs / top).is_dir() and not (runs / top).is_symlink():
            return f"the folder {target} in the runs folder"
        return None
    if top == "reports" and parts[1] != "sweeps":
        return None
    if (runs / top / "run.json").exists():
        return f"a file of run {top} ({target}): run folders hold amltui's records, configs and checkpoints"
    return f"amltui's internals in {runs / top} ({target})"
