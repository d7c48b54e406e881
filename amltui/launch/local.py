"""The local executor: one worker process per slot, runs handed out one at a time as slots free up.

Slots are GPUs × slots-per-GPU (each worker sees one GPU through CUDA_VISIBLE_DEVICES, in PCI bus order) or,
with no GPU, CPU slots that split the cores between them. A failing run never stops the queue.

``python -m amltui.launch.local --runs-dir DIR [slot options] RUN_ID...`` runs a scheduler in the background
(``amltui run --detach``); the CLI's foreground mode drives the same class and draws live progress.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amltui.fsutil import FileLock
from amltui.runs import now, run_dir
from amltui.runs import set_status as _set_status
from amltui.store import Store, StoreError

EXIT_CANCELLED = 130


@dataclass(frozen=True)
class Slot:
    name: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def gpu(self) -> str | None:
        return self.env.get("CUDA_VISIBLE_DEVICES")


def parse_gpus(text: str | None) -> list[int] | None:
    """'0,1' → [0, 1]; None/'' → None (detect); 'none' → [] (CPU only)."""
    if text is None or text.strip() == "":
        return None
    if text.strip().lower() in ("none", "cpu"):
        return []
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--gpus {text!r}: give GPU indices separated by commas, e.g. 0,1 (or 'none')") from None
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text!r}: indices must be distinct and ≥ 0")
    return gpus


def detect_gpus() -> list[int]:
    """GPU indices visible to this process (nvidia-smi, in PCI bus order), honouring CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(v) for v in visible.split(",") if v.strip().isdigit()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


def make_slots(gpus: Sequence[int], slots_per_gpu: int = 1, cpu_slots: int = 1, cores: int | None = None) -> list[Slot]:
    """Slots for these GPUs (or CPU slots when there are none), each with the environment of its worker."""
    if slots_per_gpu < 1 or cpu_slots < 1:
        raise ValueError("--slots-per-gpu and --cpu-slots must be at least 1")
    if gpus:
        return [Slot(f"gpu{g}" + (f"#{k}" if slots_per_gpu > 1 else ""),
                     {"CUDA_VISIBLE_DEVICES": str(g), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
                for g in gpus for k in range(slots_per_gpu)]
    cores = cores or len(os.sched_getaffinity(0))
    threads = max(1, cores // cpu_slots)
    # An empty CUDA_VISIBLE_DEVICES hides every GPU: CPU slots must not grab one by accident.
    return [Slot(f"cpu{k}", {"CUDA_VISIBLE_DEVICES": "", "AMLTUI_THREADS": str(threads)}) for k in range(cpu_slots)]


def default_cpu_slots() -> int:
    """One CPU slot per 8 cores, at least one: small machines run one job at a time with every core."""
    return max(1, len(os.sched_getaffinity(0)) // 8)


WorkerFactory = Callable[..., subprocess.Popen]


def spawn_worker(run_id: str, slot: Slot, runs_dir: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start ``python -m amltui.launch.worker`` in its own session, output appended to <run>/worker.out.

    ``pass_fds`` hands the slot's lock to the worker, so the slot stays taken while the worker lives even if
    its scheduler dies.
    """
    rd = run_dir(runs_dir, run_id)
    env = {**os.environ, **slot.env, "AMLTUI_SLOT": slot.name, "PYTHONUNBUFFERED": "1"}
    with open(rd.path / "worker.out", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "amltui.launch.worker", "--runs-dir", str(runs_dir), "--resume", run_id],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            pass_fds=pass_fds,
        )


def slot_lock(runs_dir: Path, slot: Slot) -> FileLock | None:
    """Take a slot for this scheduler, or None if another scheduler of the same runs dir holds it."""
    folder = Path(runs_dir) / ".slots"
    folder.mkdir(exist_ok=True)
    lock = FileLock(folder / f"{slot.name}.lock", timeout=0)
    try:
        lock.acquire()
    except TimeoutError:
        return None
    return lock


def set_status(store: Store, run_id: str, status: str, **kwargs: Any) -> dict | None:
    """amltui.runs.set_status for the scheduler: a run whose folder or record is gone or unwritable is reported
    in the scheduler's log and skipped (None, as if its status had changed), so one damaged run never stops
    the others."""
    try:
        return _set_status(store, run_id, status, **kwargs)
    except (OSError, ValueError, StoreError) as exc:
        print(f"{now()} run {run_id}: could not record {status!r}: {exc}", flush=True)
        return None


class LocalScheduler:
    """Hands ``run_ids`` (queued runs) to free slots in order until every one has ended."""

    def __init__(self, store: Store, run_ids: Sequence[str], slots: Sequence[Slot], *,
                 spawn: WorkerFactory = spawn_worker) -> None:
        if not slots:
            raise ValueError("no slots to run on")
        self.store = store
        self.pending = list(run_ids)
        self.slots = list(slots)
        self.spawn = spawn
        self.active: dict[str, tuple[Slot, subprocess.Popen]] = {}
        self.locks: dict[str, FileLock] = {}
        self.cancelling = False

    @property
    def free_slots(self) -> list[Slot]:
        busy = {slot.name for slot, _ in self.active.values()}
        return [s for s in self.slots if s.name not in busy]

    def step(self) -> bool:
        """Collect ended workers, start queued runs on free slots; False once nothing is left to do."""
        for run_id, (slot, proc) in list(self.active.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.active[run_id]
            self._release(slot)
            # The worker records its own end; these only catch one that died before it could. They apply while
            # the record still shows this worker running (not if the run was meanwhile cancelled and resumed).
            mine = dict(expect=("running",), worker_pid=proc.pid, pid=None)
            if code == -signal.SIGTERM:
                # Stopped (cancel) before its handler was installed, e.g. while still importing torch.
                set_status(self.store, run_id, "cancelled", error="cancelled (SIGTERM) before the worker was ready",
                           **mine)
            elif code in (1, EXIT_CANCELLED):
                status = "cancelled" if code == EXIT_CANCELLED else "failed"
                set_status(self.store, run_id, status,
                           error=f"worker exited with code {code} before recording why (see worker.out)", **mine)
            elif code != 0:
                # Killed before it could record anything (SIGKILL, OOM killer): it must not stay "running".
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                set_status(self.store, run_id, "failed",
                           error=f"lost: worker on slot {slot.name} ended by {how} without reporting", **mine)
        while self.pending and not self.cancelling:
            slot = next((s for s in self.free_slots if self._take(s)), None)
            if slot is None:
                break  # every slot busy (here or in another scheduler of this runs dir)
            run_id = self.pending.pop(0)
            claimed = set_status(self.store, run_id, "running", expect=("queued",), slot=slot.name,
                                 executor="local", started=now(), pid=None)
            if claimed is None:
                self._release(slot)
                continue  # cancelled or removed while queued
            try:
                fd = self.locks[slot.name].fd
                proc = self.spawn(run_id, slot, self.store.runs_dir, pass_fds=(fd,))
                self.active[run_id] = (slot, proc)
                # Known at once, so a cancel while the worker is still importing torch can reach it.
                set_status(self.store, run_id, "running", expect=("running",), pid=proc.pid,
                           host=socket.gethostname())
            except OSError as exc:
                self._release(slot)
                set_status(self.store, run_id, "failed", error=f"could not start the worker: {exc}")
        return bool(self.pending or self.active)

    def _take(self, slot: Slot) -> bool:
        lock = slot_lock(self.store.runs_dir, slot)
        if lock is not None:
            self.locks[slot.name] = lock
        return lock is not None

    def _release(self, slot: Slot) -> None:
        lock = self.locks.pop(slot.name, None)
        if lock is not None:
            lock.release()

    def run(self, poll: float = 0.5, on_tick: Callable[[], None] | None = None) -> None:
        while self.step():
            if on_tick:
                on_tick()
            time.sleep(poll)
        if on_tick:
            on_tick()

    def cancel_all(self, timeout: float = 30.0) -> None:
        """Stop starting runs, mark the pending ones cancelled, SIGTERM the workers and wait for them."""
        self.cancelling = True
        for run_id in self.pending:
            set_status(self.store, run_id, "cancelled", expect=("queued",), error="cancelled before it started")
        self.pending.clear()
        for _, proc in self.active.values():
            _terminate(proc)
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            self.step()
            time.sleep(0.1)
        for run_id, (slot, proc) in list(self.active.items()):
            proc.kill()
            proc.wait()
            self._release(slot)
            set_status(self.store, run_id, "cancelled", expect=("running", "queued"), pid=None,
                       error="cancelled (the worker did not stop in time and was killed)")
            del self.active[run_id]


def _terminate(proc: subprocess.Popen) -> None:
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass


def start_detached(runs_dir: Path, run_ids: Sequence[str], gpus: Sequence[int], slots_per_gpu: int,
                   cpu_slots: int) -> subprocess.Popen:
    """Run a scheduler for these runs in the background, in its own session; it outlives the CLI."""
    log = Path(runs_dir) / "scheduler.log"
    args = [sys.executable, "-m", "amltui.launch.local", "--runs-dir", str(runs_dir),
            "--gpus", ",".join(map(str, gpus)) or "none", "--slots-per-gpu", str(slots_per_gpu),
            "--cpu-slots", str(cpu_slots), *run_ids]
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amltui.launch.local", description=__doc__)
    parser.add_argument("run_ids", nargs="+")
    parser.add_argument("--runs-dir", required=True, type=Path)
    parser.add_argument("--gpus", default=None)
    parser.add_argument("--slots-per-gpu", type=int, default=1)
    parser.add_argument("--cpu-slots", type=int, default=1)
    args = parser.parse_args(argv)
    gpus = parse_gpus(args.gpus)
    slots = make_slots(detect_gpus() if gpus is None else gpus, args.slots_per_gpu, args.cpu_slots)
    scheduler = LocalScheduler(Store(args.runs_dir), args.run_ids, slots)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print(f"{now()} scheduler pid {os.getpid()}: {len(args.run_ids)} run(s) on {[s.name for s in slots]}",
          flush=True)
    try:
        scheduler.run()
    except KeyboardInterrupt:
        scheduler.cancel_all()
        return EXIT_CANCELLED
    print(f"{now()} scheduler pid {os.getpid()}: all runs ended", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
