"""The dashboard at 80×24 and 120×40 (Textual's Pilot): progress counts never cut, the headline metrics (A_SA at 120
columns), a sweep's grid point beside the id, and the results screen's sweep view with a main table that has rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from amltui.app.fsutil import atomic_write_json
from amltui.app.runs.outcomes import CHANCE_MARK, at_chance, chance_note
from amltui.app.runs.records import Status
from amltui.app.runs.store import Store, create_records, update_record
from amltui.app.runs.sweeps import save_manifest
from amltui.tui.actions import LaunchRequest, LaunchResult
from amltui.tui.dashboard import DashboardApp, help_sections
from amltui.tui.data import FROZEN
from amltui.tui.demo import make_record, write_run
from amltui.tui.screens import new_runs
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.widgets.runs_table import RunsTable
from core.config import RunConfig
from tests.helpers import ready, row_line, run_app, screen_text, settled, wait_for

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
    create_records(Store(runs), records)


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


@pytest.mark.slow
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

    run_app(long_runs, body, size=size)


def configured(variant: str, seed: int, **values: Any) -> dict[str, Any]:
    """The record fields that follow from a run's config (what amltui/app/runs/folders.py writes at creation)."""
    config = RunConfig.resolve(variant, "quick", seed=seed, dataset="synthetic", epochs=6, test_subset=50, **values)
    return {"config": config.to_dict(), "config_diff": config.diff_from_preset(), "group": config.group_key(),
            "context": config.context_key()}


@pytest.fixture
def sweep_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The issue's sweep: `--grid lambda_sa=0.25,1 --seeds 0,1 --sweep lam --test-subset 50` (look-alike ids) plus
    its baselines. Their setting ("quick; epochs=6; test_subset=50") sorts after the sweep's ("…; lambda_sa=…")."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    specs: list[tuple[str, str, int, str, int | None, int]] = []
    change: dict[str, dict[str, Any]] = {}
    for seed in (0, 1):
        run_id = f"baseline-s{seed}-1206-201500-a{seed:03d}"
        specs.append((run_id, "baseline", seed, Status.DONE, None, 6))
        change[run_id] = configured("baseline", seed)
    for n, (lam, seed) in enumerate(((0.25, 0), (0.25, 1), (1.0, 0), (1.0, 1))):
        run_id = f"ml_sa-s{seed}-1206-201500-b{n:03d}"
        specs.append((run_id, "ml_sa", seed, Status.DONE, None, 6))
        change[run_id] = {"sweep": "lam", **configured("ml_sa", seed, lambda_sa=lam)}
        change[run_id]["metrics"] = {"A_orig": 99.0 + n / 10, "A_PGD": 70.0 + 2 * lam + seed / 10,
                                     "A_SA": 96.0 + lam, "A_IA": 80.0 + 2 * lam - seed / 10}
    add_runs(runs, specs, change)
    save_manifest(runs, "lam", {"lambda_sa": [0.25, 1.0]}, [i for i in change if i.startswith("ml_sa")])
    return runs


@pytest.mark.slow
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
        assert "lambda_sa" not in row_line(text, "baseline-s0-1206-201500-a000")

    run_app(sweep_runs, body, size=size)


@pytest.mark.slow
def test_no_point_column_without_sweeps_and_a_sa_at_120_columns(long_runs: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        header = row_line(screen_text(app), "run").split()
        assert header[:6] == ["run", "status", "A_orig", "A_PGD", "A_SA", "A_IA"]
        assert "point" not in header

    run_app(long_runs, body, size=(120, 40))


async def results(app: DashboardApp, pilot: Pilot) -> ResultsScreen:
    await ready(app, pilot)
    await pilot.press("r")
    screen = app.screen
    assert isinstance(screen, ResultsScreen)
    await wait_for(pilot, lambda: screen.loaded, what="the results")
    await settled(pilot)
    return screen


def main_table_rows(app: DashboardApp, screen: ResultsScreen) -> list[str]:
    """The main table's region on screen (it must have height) and the lines of its rows shown there."""
    region = screen.query_one("#results", DataTable).region
    assert region.height > 0, f"the main table has no height: {region}"
    lines = screen_text(app).splitlines()[region.y: region.y + region.height]
    return [line for line in lines if line.strip().startswith("S")]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_results_list_the_baseline_first_and_write_lambda_as_the_sweep_view(sweep_runs: Path,
                                                                           size: tuple[int, int]) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        screen = await results(app, pilot)
        rows = main_table_rows(app, screen)
        assert [line.split()[:2] for line in rows] == [["S1", "baseline"], ["S2", "ml_sa"], ["S3", "ml_sa"]], rows
        text = screen_text(app)
        assert "S2 = synthetic · quick; epochs=6; lambda_sa=0.25; test_subset=50" in text
        assert "lambda_sa=1;" in text and "lambda_sa=1.0" not in text
        await pilot.press("s")
        await wait_for(pilot, lambda: "Sweep lam" in screen_text(app), what="the sweep view")
        await wait_for(pilot, lambda: len(main_table_rows(app, screen)) == 2, what="the sweep's rows")
        text = screen_text(app)
        assert "S1 = synthetic · lambda_sa=0.25" in text and "S2 = synthetic · lambda_sa=1" in text
        rows = main_table_rows(app, screen)
        assert all("±" in line and "(n=2)" in line for line in rows), rows

    run_app(sweep_runs, body, size=size)


@pytest.mark.slow
def test_s_without_sweeps_says_how_to_make_one(long_runs: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        screen = await results(app, pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: any("No sweeps in this runs folder" in str(n.message) and "--sweep NAME"
                                          in str(n.message) for n in app._notifications), what="the notice")
        assert screen.sweep is None and app.screen is screen

    run_app(long_runs, body, size=(80, 24))


@pytest.mark.slow
@pytest.mark.parametrize("marked, question, note", [
    (["baseline-s0-e150"], "Delete 1 run?", "Its folder is deleted too."),
    (["baseline-s0-e150", "ml_sa-s0-paper"], "Delete 2 runs?", "Their folders are deleted too.")])
def test_a_bulk_question_follows_the_count(long_runs: Path, marked: list[str], question: str, note: str) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        table = app.screen.query_one(RunsTable)
        for run_id in marked:
            table.move_cursor(row=table.get_row_index(run_id))
            await pilot.press("space")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        asked = app.screen.question
        assert asked.startswith(question) and note in asked, asked
        await pilot.press("n")

    run_app(long_runs, body, size=(80, 24))


def test_the_help_screen_lists_the_sideways_keys() -> None:
    runs = dict(help_sections())["runs"]
    assert {"←", "→"} <= {key for keys, _, _ in runs for key in keys}


# ---- the launch form --------------------------------------------------------------------------------------


async def launch_form(app: DashboardApp, pilot: Pilot) -> LaunchScreen:
    await ready(app, pilot)
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the form")
    form = app.screen
    assert isinstance(form, LaunchScreen)
    return form


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_the_subset_fields_keep_their_labels_when_filled(long_runs: Path, size: tuple[int, int]) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await launch_form(app, pilot)
        form.query_one("#train-subset", Input).value = "300"
        form.query_one("#test-subset", Input).value = "100"
        await settled(pilot)
        line = next(line for line in screen_text(app).splitlines() if "subsets" in line)
        assert "train 300" in line and "test 100" in line, line
        await pilot.press("escape")

    run_app(long_runs, body, size=size)


@pytest.mark.slow
def test_keys_typed_after_the_large_sweep_question_are_asked_about_again(long_runs: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """60 runs ask first; keys typed fast after the question and a Ctrl+S in the same burst must not queue the
    changed form (it was keyed by the run count, which "epochs=12" → "epochs=1200" keeps)."""
    sent: list[LaunchRequest] = []
    monkeypatch.setattr(new_runs, "launch", lambda runs_dir, request: sent.append(request) or LaunchResult(["x"]))

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await launch_form(app, pilot)
        form.query_one("#dataset", Select).value = "synthetic"
        form.query_one("#overrides", Input).value = "epochs=12"
        form.query_one("#grid", Input).value = "lr=1e-4:1e-2:log:60"
        form.query_one("#sweep", Input).value = "burst"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "60 runs (sweep burst)" in screen_text(app), what="the question")
        form.query_one("#overrides", Input).focus()
        await pilot.press("end", "0", "0", "ctrl+s")  # one burst; press returns once the form has handled it
        await settled(pilot)
        assert sent == [] and app.screen is form, sent
        assert form.query_one("#overrides", Input).value == "epochs=1200"
        assert "60 runs (sweep burst)" in screen_text(app)  # asked again, about what is now in the form
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: sent, what="the confirmed launch")
        assert "epochs=1200" in sent[0].overrides and len(sent) == 1

    run_app(long_runs, body, size=(80, 24))


# ---- a run at chance ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("a_orig, expected", [(10.0, True), (15.0, True), (15.01, False), (98.9, False),
                                               (None, False), ("10", False), (True, False)])
def test_at_chance_is_a_orig_within_core_flags_margin_of_one_in_ten(a_orig: Any, expected: bool) -> None:
    assert at_chance({"metrics": {"A_orig": a_orig}}) is expected
    assert at_chance({"metrics": {"A_orig": 51.0}, "n_classes": 2})  # 50% is chance for two classes
    assert not at_chance({"metrics": {"A_orig": 60.0}, "n_classes": 2})
    assert at_chance({"metrics": "odd"}) is False and chance_note({"metrics": {}}) is None


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_a_run_at_chance_is_marked_in_the_table_and_said_in_its_detail(long_runs: Path, size: tuple[int, int]
                                                                       ) -> None:
    update_record(long_runs, "ml_sa-s0-paper", lambda r: r.update(
        status="done", metrics={"A_orig": 10.0, "A_PGD": 10.0, "A_SA": 10.0}, metrics_n={"A_orig": 300}))

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        text = screen_text(app)
        assert f"10.0{CHANCE_MARK}" in row_line(text, "ml_sa-s0-paper")
        assert CHANCE_MARK not in row_line(text, "baseline-s0-e150")
        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index("ml_sa-s0-paper"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: "is at chance" in screen_text(app), what="the detail's note")
        assert "learned nothing" in screen_text(app)

    run_app(long_runs, body, size=size)
