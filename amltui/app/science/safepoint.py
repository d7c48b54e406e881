"""Cancelling a worker only at safe points.

A signal handler that raises lands wherever the main thread happens to be: in the middle of ``import torch``
(half-initialised modules, a nonsense error recorded as the failure), inside a file write, inside a library's
cleanup. So SIGTERM / SIGINT only set a flag here, and the worker calls ``SafePoints.check(phase)`` where
stopping is harmless: before and after each phase, between batches, between evaluation batches, after a
checkpoint has been renamed into place. ``check`` also looks, at most once a second, for a cancel request
written into the run record (``cancel_requested``), which reaches a worker that no signal can (one on another
host, or one that started after the cancel).

``AMLTUI_TEST_HOLD=<phase>`` makes the worker stop at that phase, write ``<run>/hold-<phase>`` and wait until
it is cancelled (or 300 s pass), so tests cancel at a known phase instead of sleeping and hoping.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

HOLD_ENV = "AMLTUI_TEST_HOLD"
HOLD_MAX_SECONDS = 300.0
# Where AMLTUI_TEST_HOLD can hold a worker ("epoch": after an epoch's checkpoint is in place).
PHASES = ("spawn", "import", "data", "invariance", "train", "checkpoint", "epoch", "eval")

# What each phase is called in a "cancelled while …" message.
PHASE_TEXT = {"start": "starting", "import": "importing", "data": "loading data",
              "invariance": "making invariance sets", "train": "training", "checkpoint": "writing a checkpoint",
              "eval": "evaluating", "finish": "finishing"}


class Cancelled(KeyboardInterrupt):
    """Raised by ``SafePoints.check`` (only there) once the run is to stop; the message is the reason."""


_signal_reason: str | None = None
_pending_failure: Exception | None = None
_installed = False


def install(suffix: str = "") -> None:
    """Turn SIGTERM and SIGINT into a flag (main thread only). ``suffix`` is added to the reason."""
    global _installed
    _installed = True

    def handler(signum: int, frame: FrameType | None) -> None:
        global _signal_reason
        if _signal_reason is None:
            _signal_reason = f"{signal.Signals(signum).name}{suffix}"

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def installed() -> bool:
    return _installed


def signalled() -> str | None:
    """The signal that arrived (e.g. "SIGTERM (Slurm job 12)"), or None if no stop signal has arrived."""
    return _signal_reason


def signal_reason(signal_name: str) -> str:
    """Why a run stopped that got a signal but no cancel request: who sent it is unknown here (a cancel through
    amltui writes its request into the record first, and that names who asked)."""
    return (f"cancelled by {signal_name}, not through amltui (no cancel request in the record: e.g. kill, a "
            "shutdown or a Slurm time limit)")


def fail_at_next_safe_point(exc: Exception) -> None:
    """Make the next safe point raise ``exc`` (e.g. Slurm's time-limit warning): raised from a signal handler it
    could land inside a write, or in code that catches and carries on, and the run would end "done" regardless."""
    global _pending_failure
    if _pending_failure is None:
        _pending_failure = exc


def reset() -> None:
    """Forget an earlier signal (tests; a process that runs several workers in turn)."""
    global _signal_reason, _pending_failure
    _signal_reason = None
    _pending_failure = None


class SafePoints:
    """The worker's view of "should I stop now?": a signal, or a cancel request in the run record."""

    def __init__(self, run_path: Path, read_request: Callable[[], str | None], *, every: float = 1.0) -> None:
        self.run_path = Path(run_path)
        self.read_request = read_request
        self.every = every
        self.phase = "start"
        self._next_read = 0.0
        self._request: str | None = None
        self._held: set[str] = set()

    def requested(self, *, force: bool = False) -> str | None:
        """Why the run must stop (None: it goes on). Reads the record at most every ``every`` s."""
        now = time.monotonic()
        # After a signal the record is read at once: a cancel through amltui wrote its reason there first.
        if self._request is None and (force or now >= self._next_read or signalled()):
            self._next_read = now + self.every
            try:
                self._request = self.read_request()
            except (OSError, ValueError):
                pass  # an unreadable record is someone else's problem; signals still work
        sig = signalled()
        if self._request and sig:
            return f"{self._request} ({sig})"
        return self._request or (signal_reason(sig) if sig else None)

    def check(self, phase: str | None = None, *, force: bool = False) -> None:
        """A safe point: raise Cancelled if the run is to stop. ``phase`` names the phase that starts here.

        The reason names the phase during which the stop was noticed (the one that just ended).
        """
        global _pending_failure
        if _pending_failure is not None:
            failure, _pending_failure = _pending_failure, None
            raise failure
        changing = phase is not None and phase != self.phase
        reason = self.requested(force=force or changing)
        if reason:
            raise Cancelled(f"{reason}; stopped while {PHASE_TEXT.get(self.phase, self.phase)}")
        if changing:
            assert phase is not None
            self.phase = phase
            # A test holding here gets its cancel *inside* this phase: the phase's work still runs with the
            # request pending (a signal never interrupts it), and the next safe point stops the run.
            self.hold(phase)

    def hold(self, phase: str) -> None:
        """With AMLTUI_TEST_HOLD=phase: mark the folder and wait (once) until the run is cancelled."""
        if os.environ.get(HOLD_ENV) != phase or phase in self._held:
            return
        self._held.add(phase)
        hold_here(self.run_path, phase, lambda: self.requested(force=True) is not None)


def hold_here(run_path: Path, phase: str, released: Callable[[], bool] = lambda: False) -> None:
    """Write ``<run>/hold-<phase>`` and wait until ``released()`` (or the process is killed, or 300 s)."""
    (Path(run_path) / f"hold-{phase}").write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + HOLD_MAX_SECONDS
    while not released() and time.monotonic() < deadline:
        time.sleep(0.02)
