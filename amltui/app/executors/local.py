"""The local executor: one worker process per slot, runs handed out one at a time as slots free up.

Slots are GPUs × slots-per-GPU (each worker sees one GPU through CUDA_VISIBLE_DEVICES, by UUID; amltui/app/gpus.py
resolves the user's visible GPUs and may refuse a busy or full GPU before each dispatch) or, with no GPU, CPU
slots. Either kind splits the cores between its workers. A failing run never stops the queue.

``python -m amltui.app.executors.local --runs-dir DIR [slot options] RUN_ID...`` runs a scheduler in the background
(``amltui run --detach``); the CLI's foreground mode drives the same class and draws live progress.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from amltui.app.executors.slots import Slot, local_plan
from amltui.app.fsutil import FileLock, make_folder, open_append
from amltui.app.runs.folders import run_dir
from amltui.app.runs.owners import SchedulerClaim, process_start
from amltui.app.runs.records import WORKING, Status, now
from amltui.app.runs.states import request_cancel
from amltui.app.runs.states import set_status as _set_status
from amltui.app.runs.store import Store, StoreError
from amltui.app.science.worker import EXIT_BUSY, EXIT_CANCELLED

# `-P` (Python ≥ 3.11): `python -m` would put the current folder first on sys.path, so an `amltui/` or `core/`
# package in the folder the user started from (a checkout's parent, a hostile shared folder) would be imported
# instead of the installed code. PYTHONPATH is kept.
PYTHON = (sys.executable, "-P")

WorkerFactory = Callable[..., subprocess.Popen]
# admit(slot, run_id, active) → may this free slot take this run now? (amltui.app.gpus.GpuGate)
Admit = Callable[[Slot, str, dict[str, tuple[Slot, subprocess.Popen]]], bool]


def spawn_worker(run_id: str, slot: Slot, runs_dir: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start ``python -P -m amltui.app.science.worker`` in its own session, output appended to <run>/worker.out.

    ``pass_fds`` hands the slot's lock to the worker, so the slot stays taken while the worker lives even if
    its scheduler dies.
    """
    rd = run_dir(runs_dir, run_id)
    env = {**os.environ, **slot.env, "AMLTUI_SLOT": slot.name, "PYTHONUNBUFFERED": "1"}
    with open_append(rd.path / "worker.out", binary=True) as out:
        return subprocess.Popen(
            [*PYTHON, "-m", "amltui.app.science.worker", "--runs-dir", str(runs_dir), "--resume", run_id],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            pass_fds=pass_fds,
        )


def slot_lock(runs_dir: Path, slot: Slot) -> FileLock | None:
    """Take a slot for this scheduler, or None if another scheduler of the same runs dir holds it."""
    folder = make_folder(Path(runs_dir) / ".slots")
    lock = FileLock(folder / f"{slot.name}.lock", timeout=0)
    try:
        lock.acquire()
    except TimeoutError:
        return None
    return lock


def set_status(store: Store, run_id: str, status: Status, **kwargs: Any) -> dict | None:
    """amltui.app.runs.states.set_status for the scheduler: a run whose folder or record is gone or unwritable is
    reported in the scheduler's log and skipped (None, as if its status had changed), so one damaged run never stops
    the others."""
    try:
        return _set_status(store, run_id, status, **kwargs)
    except (OSError, ValueError, StoreError) as exc:
        print(f"{now()} run {run_id}: could not record {str(status)!r}: {exc}", flush=True)
        return None


class LocalScheduler:
    """Hands ``run_ids`` (queued runs) to free slots in order until every one has ended."""

    def __init__(self, store: Store, run_ids: Sequence[str], slots: Sequence[Slot], *,
                 spawn: WorkerFactory = spawn_worker, admit: Admit | None = None,
                 claim: SchedulerClaim | None = None) -> None:
        if not slots:
            raise ValueError("no slots to run on")
        # Held while this scheduler lives: if it dies, its still-queued runs are found orphaned.
        self.claim = claim or SchedulerClaim.create(store.runs_dir, run_ids)
        self.display_error: str | None = None
        self.store = store
        self.pending = list(run_ids)
        self.slots = list(slots)
        self.spawn = spawn
        self.admit = admit
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
            if code != 0:
                self._settle(run_id, slot, proc.pid, code)
        while self.pending and not self.cancelling:
            admits = self.admit or (lambda slot, run_id, active: True)
            slot = next((s for s in self.free_slots if admits(s, self.pending[0], self.active) and self._take(s)),
                        None)
            if slot is None:
                break  # every slot busy (here or in another scheduler of this runs dir) or refused (GPU busy/full)
            run_id = self.pending.pop(0)
            claimed = set_status(self.store, run_id, Status.RUNNING, expect=(Status.QUEUED,), slot=slot.name,
                                 executor="local", started=now(), pid=None, cancel_requested=None)
            if claimed is None:
                self._release(slot)
                continue  # cancelled or removed while queued
            try:
                fd = self.locks[slot.name].fd
                proc = self.spawn(run_id, slot, self.store.runs_dir, pass_fds=(fd,))
                self.active[run_id] = (slot, proc)
                # Known at once, so a cancel while the worker is still importing torch can reach it.
                set_status(self.store, run_id, Status.RUNNING, expect=(Status.RUNNING,), pid=proc.pid,
                           pid_start=process_start(proc.pid), host=socket.gethostname())
            except OSError as exc:
                self._release(slot)
                set_status(self.store, run_id, Status.FAILED, error=f"could not start the worker: {exc}")
        return bool(self.pending or self.active)

    def _settle(self, run_id: str, slot: Slot, pid: int, code: int) -> None:
        """Record the end of a worker that died before it could (it records its own end otherwise).

        Applies only while the record still shows this worker running (not if the run was meanwhile cancelled
        and resumed). A worker that dies with a cancel pending, or of SIGTERM before its handler was
        installed, was cancelled; anything else unexplained is lost.
        """
        mine = dict(expect=WORKING, worker_pid=pid, pid=None)
        try:
            requested = run_dir(self.store.runs_dir, run_id).read_record().get("cancel_requested")
        except (OSError, ValueError, AttributeError):
            return  # the folder was removed or damaged: nothing to settle
        how = f"signal {-code} ({_signal_name(-code)})" if code < 0 else f"exit code {code}"
        if code == EXIT_BUSY:
            set_status(self.store, run_id, Status.FAILED, error="another worker still owns the run folder (its "
                       "worker.lock); this one refused to start (see worker.out)", **mine)
        elif requested or code in (-signal.SIGTERM, -signal.SIGINT, EXIT_CANCELLED):
            why = requested or Status.CANCELLED
            set_status(self.store, run_id, Status.CANCELLED, error=f"{why} (the worker ended by {how} before it "
                       "could record it)", **mine)
        elif code > 0:
            set_status(self.store, run_id, Status.FAILED,
                       error=f"worker exited with code {code} before recording why (see worker.out)", **mine)
        else:
            # Killed before it could record anything (SIGKILL, OOM killer): it must not stay "running".
            set_status(self.store, run_id, Status.FAILED,
                       error=f"lost: worker on slot {slot.name} ended by {how} without reporting", **mine)

    def _take(self, slot: Slot) -> bool:
        lock = slot_lock(self.store.runs_dir, slot)
        if lock is not None:
            self.locks[slot.name] = lock
        return lock is not None

    def _release(self, slot: Slot) -> None:
        lock = self.locks.pop(slot.name, None)
        if lock is not None:
            lock.release()

    def run(self, poll: float = 0.5, on_tick: Callable[[], None] | None = None,
            should_stop: Callable[[], str | None] | None = None) -> bool:
        """Run until every run has ended; False if ``should_stop()`` gave a reason and everything was cancelled.

        ``on_tick`` draws progress: an error in it is reported once and never stops the runs.
        """
        try:
            while True:
                reason = should_stop() if should_stop else None
                if reason:
                    self.cancel_all(reason=reason)
                    self._tick(on_tick)
                    return False
                if not self.step():
                    break
                self._tick(on_tick)
                time.sleep(poll)
            self._tick(on_tick)
            return True
        finally:
            if not self.active:
                self.claim.release()

    def _tick(self, on_tick: Callable[[], None] | None) -> None:
        if on_tick is None:
            return
        try:
            on_tick()
        except Exception as exc:  # a display problem (e.g. a malformed progress.json) must not stop the runs
            if not self.display_error:
                self.display_error = f"{type(exc).__name__}: {exc}"
                print(f"{now()} progress display failed ({self.display_error}); the runs go on", file=sys.stderr,
                      flush=True)

    def cancel_all(self, timeout: float = 30.0, reason: str = "cancelled (Ctrl-C)") -> None:
        """Stop starting runs, mark the pending ones cancelled, ask the workers to stop and wait for them."""
        self.cancelling = True
        for run_id in self.pending:
            set_status(self.store, run_id, Status.CANCELLED, expect=(Status.QUEUED,),
                       error=f"{reason} before it started")
        self.pending.clear()
        for run_id, (_, proc) in self.active.items():
            request_cancel(self.store, run_id, reason)  # recorded first: a worker not yet listening still sees it
            _terminate(proc)
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            self.step()
            time.sleep(0.1)
        for run_id, (slot, proc) in list(self.active.items()):
            proc.kill()
            proc.wait()
            self._release(slot)
            set_status(self.store, run_id, Status.CANCELLED, expect=(*WORKING, Status.QUEUED), pid=None,
                       error=f"{reason} (the worker did not stop in time and was killed)")
            del self.active[run_id]
        self.claim.release()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _terminate(proc: subprocess.Popen) -> None:
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass


def start_detached(runs_dir: Path, run_ids: Sequence[str], gpus: str | None, slots_per_gpu: str | int,
                   cpu_slots: int, gpu_max_util: float | None = None, gpu_max_mem: float | None = None
                   ) -> subprocess.Popen:
    """Run a scheduler for these runs in the background, in its own session; it outlives the CLI, and is reaped
    when it ends before its caller does.

    It inherits this environment, so it resolves ``gpus`` against the same CUDA_VISIBLE_DEVICES. The scheduler's
    claim on the runs is taken here and handed to it, so the runs are never unclaimed (and so never taken for
    orphans) while it starts up.
    """
    log = Path(runs_dir) / "scheduler.log"
    claim = SchedulerClaim.create(runs_dir, run_ids)
    args = [*PYTHON, "-m", "amltui.app.executors.local", "--runs-dir", str(runs_dir),
            "--gpus", gpus or "", "--slots-per-gpu", str(slots_per_gpu), "--cpu-slots", str(cpu_slots),
            "--claim", f"{claim.token}:{claim.fd}"]
    for flag, value in (("--gpu-max-util", gpu_max_util), ("--gpu-max-mem", gpu_max_mem)):
        if value is not None:
            args += [flag, str(value)]
    try:
        with open_append(log, binary=True) as out:
            proc = subprocess.Popen([*args, *run_ids], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=(claim.fd,))
    except BaseException:
        claim.release()
        raise
    claim.handed_over()
    # A long-lived caller (the dashboard) would keep every ended scheduler as a zombie until it exits: a daemon
    # thread waits for this one. The returned Popen still works (wait/poll are safe alongside it).
    threading.Thread(target=proc.wait, name=f"reap-scheduler-{proc.pid}", daemon=True).start()
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amltui.app.executors.local", description=__doc__)
    parser.add_argument("run_ids", nargs="+")
    parser.add_argument("--runs-dir", required=True, type=Path)
    parser.add_argument("--gpus", default=None)
    parser.add_argument("--slots-per-gpu", default="1")
    parser.add_argument("--cpu-slots", type=int, default=1)
    parser.add_argument("--gpu-max-util", type=float, default=None)
    parser.add_argument("--gpu-max-mem", type=float, default=None)
    parser.add_argument("--claim", default=None, help="TOKEN:FD of the claim the parent took for these runs.")
    args = parser.parse_args(argv)
    stop: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.append(f"cancelled: the scheduler got {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    claim = None
    if args.claim:
        token, _, fd = args.claim.rpartition(":")
        claim = SchedulerClaim.adopt(args.runs_dir, token, int(fd))
    store = Store(args.runs_dir)

    def log(text: str) -> None:
        print(f"{now()} {text}", flush=True)

    try:
        # Busy GPUs were checked by the CLI; here they only make the runs wait (the gate re-checks).
        plan = local_plan(args.gpus, args.slots_per_gpu, args.cpu_slots, store=store, log=log, require_free=False,
                          gpu_max_util=args.gpu_max_util, gpu_max_mem=args.gpu_max_mem)
    except ValueError as exc:
        log(f"cannot schedule: {exc}")
        for run_id in args.run_ids:
            set_status(store, run_id, Status.FAILED, expect=(Status.QUEUED,), error=f"not scheduled: {exc}")
        if claim is not None:
            claim.release()
        return 2
    slots = plan.slots
    scheduler = LocalScheduler(store, args.run_ids, slots, admit=plan.gate, claim=claim)
    print(f"{now()} scheduler pid {os.getpid()}: {len(args.run_ids)} run(s) on {[s.name for s in slots]}",
          flush=True)
    if not scheduler.run(should_stop=lambda: stop[0] if stop else None):
        return EXIT_CANCELLED
    print(f"{now()} scheduler pid {os.getpid()}: all runs ended", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
