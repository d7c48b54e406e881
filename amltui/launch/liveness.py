"""Noticing dead workers: a run that says "running" but whose worker is gone is marked failed (lost).

A local worker is judged by its pid (on this host) and by the heartbeat file it touches every 2 s; a run on
another host (a shared filesystem) by the heartbeat alone. Slurm runs are reconciled with Slurm itself.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from amltui.runs import run_dir, set_status
from amltui.store import Store

STALE_SECONDS = 20.0  # heartbeat silence after which a worker counts as lost (it beats every 2 s)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def heartbeat_age(runs_dir: Path, run_id: str) -> float | None:
    """Seconds since the worker's last heartbeat, or None if it never beat."""
    try:
        return time.time() - (run_dir(runs_dir, run_id).path / "heartbeat").stat().st_mtime
    except OSError:
        return None


def lost_reason(runs_dir: Path, record: dict[str, Any], stale_after: float = STALE_SECONDS) -> str | None:
    """Why a running local run is lost, or None if its worker looks alive."""
    if record.get("status") != "running" or record.get("executor", "local") != "local":
        return None
    pid, host = record.get("pid"), record.get("host")
    if pid and host == socket.gethostname() and not pid_alive(int(pid)):
        return f"lost: worker pid {pid} on {host} ended without reporting (killed?)"
    age = heartbeat_age(runs_dir, record["id"])
    if age is not None and age > stale_after:
        return f"lost: no heartbeat from the worker (pid {pid} on {host}) for {age:.0f} s"
    return None


def reap(store: Store, stale_after: float = STALE_SECONDS) -> list[str]:
    """Mark every lost local run failed; returns their ids. Cheap enough to call on every listing."""
    changed = []
    for record in store.all():
        try:
            reason = lost_reason(store.runs_dir, record, stale_after)
            if reason and set_status(store, record["id"], "failed", expect=("running",), error=reason, pid=None):
                changed.append(record["id"])
        except (OSError, ValueError, TypeError):
            # A damaged run (folder gone, run.json garbled, a mistyped pid, a full disk) is left as it is: the
            # readers show it as damaged, and one bad run must not stop every listing.
            continue
    return changed
