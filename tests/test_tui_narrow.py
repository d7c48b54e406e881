"""The dashboard at 80×24 and 120×40 (Textual's Pilot): progress counts never cut, the headline metrics (A_SA at 120
columns), a sweep's grid point beside the id, and the results screen's sweep view with a main table that has rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from amltui.app.fsutil import atomic_write_json
from amltui.app.records import Status
from amltui.app.store import Store
from amltui.tui.dashboard import DashboardApp
from amltui.tui.data import FROZEN
from amltui.tui.demo import make_record, write_run
from amltui.tui.widgets.runs_table import RunsTable
from tests.test_tui import ready, screen_text, wait_for
from tests.test_tui_runs import row_line, run_at

SIZES = [(80, 24), (120, 40)]


def add_runs(runs: Path, specs: list[tuple[str, str, int, str, int | None, int]],
             change: dict[str, dict[str, Any]] | None = None) -> None:
    """Runs (id, variant, seed, status, epoch, epochs) in ``runs``; ``change``: record fields to set per id."""
    records = []
    for minute, (run_id, variant, seed, status, epoch, epochs) in enumerate(specs):
        record, config = make_record(run_id, variant, seed, status, minute * 10, epoch, epochs)
        record.update((change or {}).get(run_id, {}))
        write_run(runs, record, config)
        records.append(record)
    Store(runs).add_many(records)


@pytest.fixture
def long_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The issue's counts: epoch 17 of 150, 0 of 1200, the paper preset's 100 of 200, an invariance set 116/1000."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    add_runs(runs, [("baseline-s0-e150", "baseline", 0, Status.FAILED, 17, 150),
                    ("baseline-s1-e1200", "baseline", 1, Status.QUEUED, None, 1200),
                    ("ml_sa-s0-paper", "ml_sa", 0, Status.CANCELLED, 100, 200),
                    ("ml_sa-s1-inv", "ml_sa", 1, Status.RUNNING, 0, 200)])
    atomic_write_json(runs / "ml_sa-s1-inv" / "progress.json",
                      {"kind": "invariance", "invariance": {"split": "train", "done": 116, "total": 1000}})
    return runs


@pytest.mark.parametrize("size", SIZES)
def test_progress_counts_are_never_cut(long_runs: Path, size: tuple[int, int]) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        table = app.screen.query_one(RunsTable)
        columns = table.ordered_columns
        start = next(i for i, c in enumerate(columns) if c.key.value == "progress")
        # scroll sideways until the progress column is the first after the frozen ones (80 columns need it)
        table.scroll_to(x=sum(c.get_render_width(table) for c in columns[FROZEN:start]), animate=False)
        await wait_for(pilot, lambda: "progress" in screen_text(app), what="the progress column in view")
        text = screen_text(app)
        for run_id, count in (("baseline-s0-e150", " 17/150"), ("baseline-s1-e1200", " 0/1200"),
                              ("ml_sa-s0-paper", " 100/200"), ("ml_sa-s1-inv", " inv 116/1000")):
            line = row_line(text, run_id)
            assert count + " " in line + " ", (run_id, line)

    run_at(long_runs, size, body)


@pytest.fixture
def sweep_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 2-point λ sweep (lambda_sa=0.25,1) over seeds 0,1 with long, look-alike ids, plus a baseline."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    specs: list[tuple[str, str, int, str, int | None, int]] = [("baseline-s0-1206-201500-aa01", "baseline", 0,
                                                                  Status.DONE, None, 6)]
    change: dict[str, dict[str, Any]] = {}
    lams = {}
    for n, (lam, seed) in enumerate(((0.25, 0), (0.25, 1), (1.0, 0), (1.0, 1))):
        run_id = f"ml_sa-s{seed}-1206-201500-b{n:03d}"
        specs.append((run_id, "ml_sa", seed, Status.DONE, None, 6))
        change[run_id], lams[run_id] = {"sweep": "lam"}, lam
    add_runs(runs, specs, change)
    store = Store(runs)
    for run_id, lam in lams.items():
        store.update(run_id, {"config": {**store.get(run_id)["config"], "lambda_sa": lam},
                              "config_diff": {"lambda_sa": lam}})
    return runs


@pytest.mark.parametrize("size", SIZES)
def test_a_sweeps_runs_show_their_grid_point_beside_the_metrics(sweep_runs: Path, size: tuple[int, int]) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        text = screen_text(app)
        header = row_line(text, "run").split()
        assert header[:5] == ["run", "status", "point", "A_orig", "A_PGD"], header
        if size[0] >= 120:
            assert header[5:7] == ["A_SA", "A_IA"]
        assert "lambda_sa=0.25" in row_line(text, "ml_sa-s0-1206-201500-b000")
        assert "lambda_sa=1 " in row_line(text, "ml_sa-s1-1206-201500-b003")
        assert "lambda_sa" not in row_line(text, "baseline-s0-1206-201500-aa01")

    run_at(sweep_runs, size, body)


def test_no_point_column_without_sweeps_and_a_sa_at_120_columns(long_runs: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        header = row_line(screen_text(app), "run").split()
        assert header[:6] == ["run", "status", "A_orig", "A_PGD", "A_SA", "A_IA"]
        assert "point" not in header

    run_at(long_runs, (120, 40), body)
