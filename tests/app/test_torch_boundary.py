"""The torch boundary: the front ends and the application core they start from load no torch.

torch costs seconds and hundreds of MB; only a run's worker process (and the commands that train, evaluate or
plot) need it. Every check runs in a fresh interpreter, so no other test's imports can hide a regression.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest

import amltui
from amltui.tui.demo import seed_demo
from tests.helpers import PILOT_UNTIL, assert_no_torch, python, torch_importers

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


def submodules(package: object) -> list[str]:
    """The package and every module below it, except __main__ (running it is not importing it)."""
    found = [package.__name__]  # type: ignore[attr-defined]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):  # type: ignore[attr-defined]
        if not info.name.endswith(".__main__"):
            found.append(info.name)
    return found


# Every module of amltui/ outside the science (amltui/app/science/, where a model runs: tests/app/test_rules.py
# rule (d)), found by walking the package, so a new module is checked without being listed.
TORCH_ALLOWED = "amltui.app.science"
MODULES = [m for m in submodules(amltui) if m != TORCH_ALLOWED and not m.startswith(TORCH_ALLOWED + ".")]


def test_the_walk_finds_every_part_of_the_package() -> None:
    """The list is the package: the front ends, each part of the application core, and nothing of the science."""
    for part in ("amltui.cli.results", "amltui.tui.dashboard", "amltui.termplot.curves", "amltui.app.runs.store",
                 "amltui.app.results.report", "amltui.app.executors.local", "amltui.app.service.launch",
                 "amltui.app.gpus"):
        assert part in MODULES
    assert not [m for m in MODULES if m.startswith(TORCH_ALLOWED)]
    assert len(MODULES) == len([p for p in Path(amltui.__file__).parent.rglob("*.py")
                                if "science" not in p.parts and p.name != "__main__.py"])


@pytest.mark.parametrize("module", MODULES)
def test_importing_loads_no_torch(module: str) -> None:
    assert_no_torch(python(torch_importers() + f"import {module}\n"), f"import {module}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("boundary") / "runs"
    seed_demo(runs)
    return runs


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["export"], ["export", "--format", "csv"]])
def test_listing_and_exporting_load_no_torch(demo: Path, args: list[str]) -> None:
    """The real commands, on a runs folder with finished, running, queued and failed runs."""
    code = torch_importers() + f"""
import runpy
sys.argv = ["amltui", *{args!r}, "--runs-dir", {str(demo)!r}]
runpy.run_module("amltui", run_name="__main__")
"""
    done = python(code)
    assert_no_torch(done, f"amltui {' '.join(args)}")
    assert "ml_sa" in done.stdout  # it did list / export the demo runs


def test_the_dashboard_and_its_screens_load_no_torch(demo: Path) -> None:
    """Start the dashboard (Pilot), let it read and reap, open a run, the results and the launch form."""
    code = torch_importers() + f"""
import asyncio
from pathlib import Path
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.screens.runs import RunsScreen
{PILOT_UNTIL}
async def main():
    app = DashboardApp(Path({str(demo)!r}), poll_interval=0.2, detail_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.polls >= 1, "the runs")
        runs = app.screen
        assert len(runs.table.rows_by_id) == 7, runs.table.rows_by_id
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail, "a run's detail")
        await pilot.press("escape", "r")
        await until(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen.loaded, "the results")
        await pilot.press("escape", "n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen), "the launch form")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is runs, "the runs screen again")

asyncio.run(main())
"""
    assert_no_torch(python(code, timeout=180), "the dashboard")
