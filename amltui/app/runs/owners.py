"""Who owns a run: one worker per run folder, one scheduler per batch of queued runs.

A worker holds an flock on ``<run>/worker.lock`` for its whole life. A second worker on the same folder cannot
take it and refuses to start, and the kernel drops the lock when the worker dies (even by SIGKILL), so "the
lock is free" is what "the worker is gone" means (amltui.app.executors.liveness); a paused or hung worker still holds
it and is shown ``stalled``, never lost.

A scheduler (foreground ``amltui run`` or a detached one) holds ``<runs>/.schedulers/<token>.lock`` and lists
its runs in ``<token>.json``. When a scheduler dies, its lock is free: its runs that are still queued will never
start and are marked ``orphaned`` (``amltui resume RUN`` runs them again).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from amltui.app.fsutil import FileLock, UnsafePath, atomic_write_json, make_folder, open_nofollow, read_json

WORKER_LOCK = "worker.lock"
SCHEDULERS = ".schedulers"
WORKER_LOCK_WAIT = 10.0  # a liveness probe holds the lock for microseconds; a real owner holds it for hours


class RunBusy(RuntimeError):
    """Another live process owns this run folder."""


def worker_lock(run_path: Path) -> FileLock:
    """Take the run folder for this worker (kept until the process ends); RunBusy if another has it."""
    lock = FileLock(Path(run_path) / WORKER_LOCK, timeout=WORKER_LOCK_WAIT)
    try:
        lock.acquire()
    except TimeoutError:
        holder = lock.holder_pid()
        who = f"worker pid {holder}" if holder else "another worker"
        raise RunBusy(f"{who} still owns {run_path} (it holds {WORKER_LOCK}); not starting a second worker on "
                      "it — cancel that one first (`amltui cancel`), or wait for it to end") from None
    return lock


def is_locked(path: Path) -> bool:
    """True if some process holds an flock on ``path`` (probing takes it for an instant when it is free)."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)  # flock needs no write access (a shared, read-only runs folder)
    except (FileNotFoundError, UnsafePath):
        return False  # a link or a FIFO in its place is no lock of ours
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def worker_alive(run_path: Path) -> bool:
    """True while a worker owns the run folder (running, paused or hung alike)."""
    return is_locked(Path(run_path) / WORKER_LOCK)


def lock_holders(path: Path) -> set[int]:
    """The pids the kernel lists in /proc/locks as holding an flock on ``path`` (empty if none, or unknown).

    Unlike the pid a holder writes into the lock file, this cannot be planted by whoever can write the folder.
    """
    try:
        st = os.stat(path, follow_symlinks=False)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF"; a waiter's line has "->" after the number.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
            holders.add(int(fields[4]))
    return holders


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), or None if gone."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{int(pid)}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, ValueError):
        return []


def worker_proof(run_path: Path, pid: int, started: int | None) -> str | None:
    """How ``pid`` is proven to be this run's worker, or None when it is not (a stranger's pid, a reused one).

    Proof is either the kernel's word that ``pid`` holds ``<run>/worker.lock``, or, for a worker that has not
    taken the lock yet, its start time matching the one recorded at spawn (``started``) and the run's id among
    its arguments. A pid named in a record alone proves nothing: anyone who can write the runs folder can plant one.
    """
    if pid in lock_holders(Path(run_path) / WORKER_LOCK):
        return f"it holds {WORKER_LOCK}"
    if started is not None and process_start(pid) == started and Path(run_path).name in _command_line(pid):
        return "its start time and command line match the ones recorded at spawn"
    return None


def lock_holder(run_path: Path) -> int | None:
    """The pid the owning worker wrote into its lock file (informative only)."""
    return FileLock(Path(run_path) / WORKER_LOCK).holder_pid()


class SchedulerClaim:
    """A scheduler's hold on the queued runs it will start; see the module docstring."""

    def __init__(self, runs_dir: Path, token: str, lock: FileLock | None, fd: int | None) -> None:
        self.folder = Path(runs_dir) / SCHEDULERS
        self.token = token
        self._lock = lock
        self._fd = fd

    @classmethod
    def create(cls, runs_dir: Path, run_ids: Iterable[str]) -> SchedulerClaim:
        folder = make_folder(Path(runs_dir) / SCHEDULERS)
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        lock = FileLock(folder / f"{token}.lock", timeout=0)
        lock.acquire()
        claim = cls(runs_dir, token, lock, lock.fd)
        # Written only while the lock is held: a reader that sees the list can trust the lock to tell.
        atomic_write_json(claim.list_file, {"pid": os.getpid(), "host": socket.gethostname(), "runs": list(run_ids)})
        return claim

    @classmethod
    def adopt(cls, runs_dir: Path, token: str, fd: int) -> SchedulerClaim:
        """The claim of a parent that started this process with the lock's descriptor (pass_fds)."""
        claim = cls(runs_dir, token, None, fd)
        try:  # name this process as the scheduler (messages about orphans give its pid)
            data = json.loads(claim.list_file.read_text())
            atomic_write_json(claim.list_file, {**data, "pid": os.getpid()})
        except (OSError, ValueError):
            pass
        return claim

    @property
    def fd(self) -> int | None:
        return self._fd

    @property
    def list_file(self) -> Path:
        return self.folder / f"{self.token}.json"

    def handed_over(self) -> None:
        """The parent's side after a child inherited the descriptor: close ours without unlocking theirs."""
        if self._lock is not None and self._lock.fd is not None:
            os.close(self._lock.fd)
            self._lock._fd = None  # the child's copy of the open file keeps the flock
        self._fd = None

    def release(self) -> None:
        """The scheduler ended normally: forget the claim."""
        self.list_file.unlink(missing_ok=True)
        (self.folder / f"{self.token}.lock").unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.release()
        elif self._fd is not None:
            os.close(self._fd)
        self._fd = None


def scheduler_claims(runs_dir: Path) -> list[tuple[Path, dict[str, Any], bool]]:
    """Every listed claim as (list file, its content, whether its scheduler is alive)."""
    folder = Path(runs_dir) / SCHEDULERS
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = read_json(path)  # bounded; a FIFO in its place is refused, not waited on
        except (OSError, ValueError):
            continue  # being replaced right now, or damaged: the next look decides
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            out.append((path, data, is_locked(path.with_suffix(".lock"))))
    return out


def forget_claim(list_file: Path) -> None:
    """Remove a dead scheduler's files (after its runs were marked orphaned)."""
    list_file.unlink(missing_ok=True)
    list_file.with_suffix(".lock").unlink(missing_ok=True)
