"""Plain helpers shared by the test modules (fixtures live in tests/conftest.py): the one tiny configuration,
waiting for a condition, a runs folder of finished runs made without training, the CLI through Typer's runner,
and the dashboard driven by Textual's Pilot. Test modules import from here, never from each other.

This file is also imported by tests/hostile_tui_driver.py as a plain module (``import helpers``), so it imports
nothing from the ``tests`` package."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from typer.testing import CliRunner

from amltui.app.runs.folders import create_run, run_dir
from amltui.app.runs.records import now
from amltui.app.runs.states import save_record, set_status
from amltui.app.runs.store import Store
from amltui.cli import app
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.runs import RunsScreen
from amltui.tui.widgets.runs_table import RunsTable
from core.config import VARIANT_DEFAULTS, RunConfig

ROOT = Path(__file__).resolve().parent.parent  # the repository (this file is tests/helpers.py)
runner = CliRunner()

# ---- the one tiny configuration -----------------------------------------------------------------------------
# Seconds per run on one CPU thread. No `epochs`: each test says how many it needs (most pass epochs=1).
TINY: dict[str, Any] = dict(dataset="synthetic", arch="small", train_subset=256, test_subset=128, batch_size=64,
                            eval_batch_size=128, pgd_steps=3, threads=1, eval_ia=False)
WAIT = 240  # generous: a fresh worker imports torch on a busy 2-core machine


def tiny_items(**changes: Any) -> list[str]:
    """TINY (with ``changes``) as ``key=value`` overrides, as `--set` and the launch form take them; the dataset
    has its own option and is left out."""
    items = {**TINY, **changes}
    items.pop("dataset", None)
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in items.items()]


def tiny_sets(**changes: Any) -> list[str]:
    """TINY (with ``changes``) as command-line ``--set key=value`` arguments."""
    return [arg for item in tiny_items(**changes) for arg in ("--set", item)]


def tiny_config(variant: str = "baseline", **changes: Any) -> RunConfig:
    """A RunConfig from the quick preset with TINY and ``changes`` (one epoch unless told)."""
    return RunConfig.resolve(variant, "quick", **{"epochs": 1, **TINY, **changes})


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT, every: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# ---- real data sets --------------------------------------------------------------------------------------------
# Debian's dataset-fashion-mnist. .ci/run installs it (and stops if it cannot), so CI always runs these tests; on
# a machine without it they are skipped, and the skip reason (pytest -ra) says what to install.
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} is missing: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")


# ---- runs without training ----------------------------------------------------------------------------------
def new_run(store: Store, run_id: str, variant: str = "baseline", **fields: Any) -> str:
    """A queued tiny run (seed 0, one epoch unless told)."""
    config = RunConfig.resolve(variant, "quick", seed=fields.pop("seed", 0), epochs=fields.pop("epochs", 1),
                               **{**TINY, **fields})
    return create_run(store, config, run_id=run_id)["id"]


# ---- the scheduler with a stand-in worker (tests/fake_worker.py) ---------------------------------------------
def queue(store: Store, n: int, **record_fields: Any) -> list[str]:
    """``n`` queued tiny baseline runs r0, r1, … with ``record_fields`` set in their records."""
    ids = []
    for seed in range(n):
        record = create_run(store, RunConfig.resolve("baseline", "quick", seed=seed, epochs=1, **TINY),
                            run_id=f"r{seed}")
        patch(store, record["id"], **record_fields)
        ids.append(record["id"])
    return ids


def patch(store: Store, run_id: str, **fields: Any) -> None:
    """Change a record in the run folder and the index alike."""
    record = store.get(run_id)
    record.update(fields)
    save_record(store, run_dir(store.runs_dir, run_id), record)


def fake_spawn(run_id: str, slot: Any, runs_dir: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Start tests/fake_worker.py in ``slot`` instead of a training worker."""
    env = {**os.environ, **slot.env, "AMLTUI_SLOT": slot.name, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_worker.py"), str(runs_dir), run_id],
                            env=env, pass_fds=pass_fds)


def drive(scheduler: Any, timeout: float = WAIT) -> None:
    """Step a LocalScheduler until every worker it started has ended."""
    deadline = time.monotonic() + timeout
    while scheduler.step():
        assert time.monotonic() < deadline, "the worker did not end"
        time.sleep(0.05)


def finished(store: Store, run_id: str, status: str = "done", **fields: Any) -> str:
    """Mark a queued run ended (no worker): what `amltui` sees of a run that has run."""
    assert set_status(store, run_id, status, expect=("queued",), **fields)
    return run_id


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_clean(result: Any, code: int | None = None, *, stored_traceback: bool = False) -> str:
    """The command ended by itself (no exception escaped, no traceback printed); returns its output with
    runs of white space made single spaces (Rich wraps long lines at 80 columns here)."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"raised {exc!r}:\n{result.output}"
    if not stored_traceback:  # `show` prints a failed run's recorded traceback on purpose
        assert "Traceback" not in result.output, result.output
    if code is not None:
        assert result.exit_code == code, f"exit {result.exit_code}, expected {code}:\n{result.output}"
    return " ".join(result.output.split())


def make_runs(runs: Path, seeds: tuple[int, ...] = (0, 1, 2), variants: tuple[str, ...] = ("baseline",)) -> Store:
    """Finished synthetic runs b0, b1, … (variant baseline) with plausible metrics, without training."""
    store = Store(runs)
    configs, ids = [], []
    for variant in variants:
        for seed in seeds:
            configs.append(RunConfig.resolve(variant, "quick", seed=seed, dataset="synthetic", epochs=2))
            ids.append(f"{variant[0]}{seed}")
    for i, (config, run_id) in enumerate(zip(configs, ids, strict=True)):
        record = create_run(store, config, run_id)
        record.update(status="done", epoch=2, ended=now(), started=now(),
                      metrics={"A_orig": 90.0 + i, "A_SA": 40.0 + i}, metrics_n={"A_orig": 128, "A_SA": 128})
        save_record(store, run_dir(runs, record["id"]), record)
    return store


def edit_record(store: Store, run_id: str, folder_too: bool = True, **changes: Any) -> None:
    """Change a record as a person or another tool would: straight in the files, no checks."""
    data = json.loads(store.path.read_text())
    for doc in data["runs"].values():
        if doc["id"] == run_id:
            doc.update(changes)
    store.path.write_text(json.dumps(data))
    if folder_too:
        path = run_dir(store.runs_dir, run_id).record_file
        if path.exists():
            record = json.loads(path.read_text())
            record.update(changes)
            path.write_text(json.dumps(record))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the dashboard through Textual's Pilot ------------------------------------------------------------------
SIZE = (80, 24)
# Snapshot texts; tests/tui/test_readme_captures.py reads the same folder.
SNAPSHOTS = Path(__file__).parent / "__snapshots__" / "test_tui"


def screen_text(app: DashboardApp) -> str:
    """What the terminal shows, as plain text (the same composition export_screenshot renders)."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def assert_snapshot(name: str, text: str) -> None:
    """``text`` equals tests/__snapshots__/test_tui/NAME.txt (written instead with AMLTUI_UPDATE_SNAPSHOTS=1)."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("AMLTUI_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: run with AMLTUI_UPDATE_SNAPSHOTS=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"screen differs from {path}:\n{text}"


async def wait_for(pilot: Pilot, condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await pilot.pause(0.05)


async def settled(pilot: Pilot) -> None:
    """Wait until the app has processed its pending messages and finished its animations (a tab's underline, a
    scroll): the screen is then whole, without guessing a duration."""
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def run_app(runs_dir: Path, body: Callable[[DashboardApp, Pilot], Coroutine[Any, Any, None]],
            poll: float = 0.2, size: tuple[int, int] = SIZE) -> None:
    """Run the dashboard on ``runs_dir`` headless at ``size`` and drive it with ``body``."""
    async def main() -> None:
        app = DashboardApp(runs_dir, poll_interval=poll, detail_interval=0.3)
        async with app.run_test(size=size) as pilot:
            await body(app, pilot)

    asyncio.run(main())


async def ready(app: DashboardApp, pilot: Pilot) -> RunsScreen:
    """Wait until a full snapshot (with describe and reap) is on screen and no read is under way."""
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
    screen = app.screen
    assert isinstance(screen, RunsScreen)
    await poll_now(pilot, screen)
    return screen


async def poll_now(pilot: Pilot, screen: RunsScreen) -> None:
    """Force a read of the runs folder and wait until its snapshot is on screen: evidence that a poll ran
    (``screen.polls`` counts applied snapshots), so "nothing changed" afterwards means something."""
    polls = screen.polls
    screen.poll(force=True)
    await wait_for(pilot, lambda: screen.polls > polls and not screen.reading, what="a fresh snapshot")
    await pilot.pause()  # let the table's refresh messages flow


def table_ids(app: DashboardApp) -> list[str]:
    table = app.screen.query_one(RunsTable)
    return [row.key.value for row in table.ordered_rows]


def cell(app: DashboardApp, run_id: str, column: str) -> str:
    return str(app.screen.query_one(RunsTable).get_cell(run_id, column))


def row_line(text: str, run_id: str) -> str:
    """The screen line showing ``run_id``."""
    return next(line for line in text.splitlines() if f" {run_id} " in line)


# ---- the real dashboard in tmux (tests/conftest.py's `dashboard` fixture) ---------------------------------
class Tmux:
    def __init__(self, socket: str, session: str) -> None:
        self.socket, self.session = socket, session

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self("send-keys", "-t", self.session, key)
            # A terminal gives no event for "key handled"; without a gap, Escape + s reads as Alt+s and a key
            # typed before a modal opens goes to the screen below.
            time.sleep(0.15)

    def wait_for(self, *texts: str, gone: tuple[str, ...] = (), timeout: float = 30.0) -> str:
        """The screen once it shows every one of ``texts`` and none of ``gone``."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            try:
                screen = self.screen()
            except AssertionError:
                screen = "(no pane)"
            if all(t in screen for t in texts) and not any(t in screen for t in gone):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{texts} (without {gone}) not on screen after {timeout} s; the screen was:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", self.session],
                              capture_output=True).returncode == 0


# ---- the torch boundary: which module first imports torch, in a fresh interpreter ----------------------------
def python(code: str, *args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


# For a dashboard driven by Pilot in a child interpreter: wait for a condition, with a deadline that names it.
PILOT_UNTIL = """
import time

async def until(pilot, condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        await pilot.pause(0.05)
"""


def torch_importers() -> str:
    """Code that prints, at exit, which module first pulled torch in ("" if none did)."""
    return textwrap.dedent("""
        import atexit, builtins, sys, traceback
        _first = []
        _import = builtins.__import__
        def _watch(name, *args, **kwargs):
            if not _first and (name == "torch" or name.startswith("torch.")) and "torch" not in sys.modules:
                _first.append("".join(traceback.format_stack(limit=12)[:-1]))
            return _import(name, *args, **kwargs)
        builtins.__import__ = _watch
        atexit.register(lambda: print("TORCH-LOADED\\n" + _first[0] if "torch" in sys.modules else "NO-TORCH",
                                      file=sys.stderr))
    """)


def assert_no_torch(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}"
    assert "TORCH-LOADED" not in done.stderr, f"{what} imported torch:\n{done.stderr.split('TORCH-LOADED')[1]}"
    assert "NO-TORCH" in done.stderr, f"{what}: the check did not run:\n{done.stderr}"


# ---- finished-run records for the results tables (no files) ----------------------------------------------
def rec(run_id, variant, seed, a_orig, a_sa, *, fp="fp1", code="0.1.0", lr=1e-3, a_ia=None, weights=None,
        dataset="mnist", n=None, ended="", **extra):
    metrics = {"A_orig": a_orig, "A_SA": a_sa, "A_PGD": a_sa - 10}
    if a_ia is not None:
        metrics["A_IA"] = a_ia
    w = {**VARIANT_DEFAULTS[variant], **(weights or {})}
    config = {"variant": variant, "seed": seed, "lr": lr, "dataset": dataset, "preset": "quick", **w,
              "pgd_steps": 40, "pgd_alpha": 0.01, "pgd_eps": None, "eps_s": 0.3}
    group = f"{variant}-{lr}-" + "-".join(f"{v}" for v in w.values())
    return {"id": run_id, "status": "done", "variant": variant, "seed": seed, "dataset": dataset,
            "preset": "quick", "fingerprint": fp, "code_version": code, "group": group, "context": f"ctx-{lr}",
            "config_diff": {"lr": lr} if lr != 1e-3 else {k: v for k, v in (weights or {}).items()},
            "config": config, "metrics": metrics, "metrics_n": n or {m: 1000 for m in metrics}, "ended": ended,
            **extra}


RUNS = [
    rec("b0", "baseline", 0, 99.0, 90.0), rec("b1", "baseline", 1, 98.0, 92.0), rec("b2", "baseline", 2, 97.0, 91.0),
    rec("m0", "ml_sa", 0, 99.5, 93.0), rec("m1", "ml_sa", 1, 98.5, 94.0),  # seed 2 missing: pairs over 0 and 1
    rec("x", "ml_sa", 3, 10.0, 10.0, status="failed"),  # not finished: never in a table
]


def epoch_science(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch records without wall-clock time, which legitimately differs between two identical runs."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def state_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two state dicts hold the same tensors, bit for bit."""
    import torch  # only the science tests call this: the dashboard's tests import helpers without torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_until_crash(config: RunConfig, data: Any, device: Any, checkpoint: Path, epoch: int) -> None:
    """Train until ``epoch`` is checkpointed, then stop as a crash would there (the checkpoint stays)."""
    from core.train import train

    class Crash(Exception):
        pass

    def crash(kind: str, info: dict[str, Any]) -> None:
        if kind == "epoch" and info["epoch"] == epoch:
            raise Crash

    with pytest.raises(Crash):
        train(config, data, device=device, checkpoint_path=checkpoint, callback=crash)
