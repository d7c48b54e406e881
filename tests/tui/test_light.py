"""The dashboard stays light: `p` computes the PCA in a child process (torch never enters the dashboard), the
schedulers it starts are reaped when they end (no zombies), and a bulk resume starts one scheduler.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.app.executors.local import slot_lock
from amltui.app.executors.slots import Slot
from amltui.app.runs.folders import create_run
from amltui.app.runs.store import Store, update_record
from amltui.app.science.execution import execute
from amltui.tui import actions
from amltui.tui.dashboard import DashboardApp
from amltui.tui.demo import seed_demo
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.widgets.runs_table import RunsTable
from core.config import RunConfig
from tests.helpers import (
    PILOT_UNTIL,
    ROOT,
    TINY,
    assert_no_torch,
    python,
    ready,
    run_app,
    screen_text,
    torch_importers,
    wait_for,
)

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, str]:
    """A real finished run (tiny, CPU, one epoch) with its checkpoint."""
    store = Store(tmp_path / "runs")
    config = RunConfig.resolve("ml_sa", "quick", **{**TINY, "epochs": 1, "eval_ia": False, "device": "cpu"})
    run_id = create_run(store, config)["id"]
    execute(store, run_id)
    return tmp_path / "runs", run_id


def test_p_computes_the_pca_in_a_child_process_and_the_dashboard_loads_no_torch(trained: tuple[Path, str],
                                                                                 tmp_path: Path) -> None:
    """A dashboard in a fresh interpreter (Pilot) opens the run, presses p and waits for the figure; torch must
    not be in its sys.modules at the end. Its cwd holds a module named `core` that would break an import from
    the cwd: the child runs with -P."""
    runs, run_id = trained
    cwd = tmp_path / "elsewhere"
    (cwd / "core").mkdir(parents=True)
    (cwd / "core" / "__init__.py").write_text("raise ImportError('imported from the cwd')\n")
    code = torch_importers() + f"""
import asyncio
from pathlib import Path
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.widgets.pca_plot import PcaView
{PILOT_UNTIL}
async def main():
    app = DashboardApp(Path({str(runs)!r}), poll_interval=0.2, detail_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen", "the runs")
        app.push_screen(DetailScreen({run_id!r}))
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail, "the detail")
        screen = app.screen
        await pilot.press("p")
        await until(pilot, lambda: screen.pca_steps and not screen.pca_busy, "the PCA")
        assert screen.query_one(PcaView).data is not None, screen.query_one(PcaView).message
        assert [s for s in screen.pca_steps if s.startswith("step 2/3: embedding")], screen.pca_steps
        assert screen.pca_process.returncode == 0
        print("PCA-SHOWN", len(screen.query_one(PcaView).data["natural"]))

asyncio.run(main())
"""
    done = python(code, "-P", cwd=cwd, timeout=600)  # the dashboard itself never imports from its cwd either
    assert_no_torch(done, "the dashboard after p")
    assert "PCA-SHOWN 128" in done.stdout, done.stdout + done.stderr
    assert (runs / run_id / "pca.png").stat().st_size > 0


def process_state(pid: int) -> str | None:
    """The state letter of a process (Z: a zombie nobody reaped), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_a_bulk_resume_starts_one_scheduler_and_the_dashboard_reaps_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two marked runs resumed with R: one scheduler for both (its only slot is held here, so it trains
    nothing); once both are cancelled and the slot is free it ends, and the dashboard (its parent, this
    process) reaps it: no zombie is left while the dashboard runs."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    seed_demo(runs)
    update_record(runs, "ml_sa_ia-s1-demo", lambda r: r.update(status="cancelled", error="cancelled by the user"))
    busy = slot_lock(runs, Slot("cpu0"))
    assert busy is not None
    log = runs / "scheduler.log"

    def started() -> list[str]:
        return [line for line in (log.read_text() if log.exists() else "").splitlines() if "run(s) on" in line]

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        for run_id in ("baseline-s2-demo", "ml_sa_ia-s1-demo"):
            table = app.screen.query_one(RunsTable)
            table.move_cursor(row=table.get_row_index(run_id))
            await pilot.press("space")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and "Resume 2 runs?" in screen_text(app),
                       what="the question")
        assert "one scheduler runs them all" in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: started(), 60, "the scheduler")
        await wait_for(pilot, lambda: any("2 runs queued again for one scheduler" in str(n.message)
                                          for n in app._notifications), what="the notice")
        assert len(started()) == 1 and ": 2 run(s) on" in started()[0], log.read_text()
        pid = int(started()[0].split("scheduler pid ")[1].split(":")[0])
        for run_id in ("baseline-s2-demo", "ml_sa_ia-s1-demo"):
            actions.cancel(runs, run_id)
        busy.release()
        await wait_for(pilot, lambda: "all runs ended" in log.read_text(), 60, "the scheduler to end")
        await wait_for(pilot, lambda: process_state(pid) is None, 30, f"pid {pid} reaped (state "
                       f"{process_state(pid)})")
        assert len(started()) == 1

    try:
        run_app(runs, body, size=(80, 24))
    finally:  # a failure above must not leave the scheduler waiting for the slot: it ends by itself
        for run_id in ("baseline-s2-demo", "ml_sa_ia-s1-demo"):
            actions.cancel(runs, run_id)
        busy.release()
