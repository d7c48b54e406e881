"""The dashboard stays light: `p` computes the PCA in a child process (torch never enters the dashboard), the
schedulers it starts are reaped when they end (no zombies), and a bulk resume starts one scheduler.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amltui.app.runs import create_run, execute
from amltui.app.store import Store
from core.config import RunConfig
from tests.conftest import TINY
from tests.test_torch_boundary import assert_no_torch, python, torch_importers


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
import asyncio, time
from pathlib import Path
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.widgets.pca_plot import PcaView

async def until(pilot, condition, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        await pilot.pause(0.1)

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
