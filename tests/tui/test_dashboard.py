"""The dashboard, driven with Textual's Pilot at 80×24: screens, live updates, actions, text snapshots.

Snapshots are the screen's text (no colours) in tests/__snapshots__/test_tui/*.txt; after an intended change of
a screen, regenerate them with ``AMLTUI_UPDATE_SNAPSHOTS=1 pytest tests/tui`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.app.results.report import aggregate, render
from amltui.app.runs.outcomes import CHANCE_MARK, at_chance
from amltui.app.runs.store import Store, create_records, delete_record, update_record
from amltui.tui.dashboard import DashboardApp
from amltui.tui.data import LogTail, progress_bar
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.screens.runs import RunsScreen
from amltui.tui.screens.sort_picker import SortPicker
from amltui.tui.widgets.chart import Series, render_chart
from amltui.tui.widgets.runs_table import RunsTable
from tests.helpers import assert_snapshot, cell, ready, run_app, screen_text, settled, table_ids, tiny_items, wait_for

# ---- pure pieces --------------------------------------------------------------------------------------


def test_progress_bar_uses_eighth_blocks() -> None:
    assert progress_bar(0, 8) == "░" * 8
    assert progress_bar(1, 8) == "█" * 8
    assert progress_bar(0.5, 8) == "████░░░░"
    assert progress_bar(1 / 16, 8) == "▌░░░░░░░"
    assert progress_bar(2.0, 4) == "████"


def test_line_chart_draws_braille_inside_its_box() -> None:
    series = [Series("loss", [(1, 2.0), (2, 1.0), (3, 0.5)], "red"), Series("acc", [(1, 0.2), (3, 0.4)], "green")]
    lines = render_chart("loss", series, 40, 10, x_max=6)
    assert len(lines) == 10
    assert all(line.cell_len <= 40 for line in lines)
    assert "━ loss" in lines[0].plain and "━ acc" in lines[0].plain
    assert lines[1].plain.startswith("     2┤") and lines[-2].plain.startswith("   0.2┤")
    assert any(0x2800 < ord(ch) <= 0x28FF for line in lines[1:-1] for ch in line.plain)
    assert lines[-1].plain.strip().endswith("epoch 6")
    assert render_chart("loss", [], 40, 6)[1].plain == "no data yet"


def test_log_tail_returns_only_complete_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    tail = LogTail(log)
    assert tail.read() == []
    log.write_text("one\ntwo\nthr")
    assert tail.read() == ["one", "two"]
    with open(log, "a") as fh:
        fh.write("ee\nfour\n")
    assert tail.read() == ["three", "four"]
    log.write_text("new\n")  # truncated and rewritten: start over
    assert tail.read() == ["new"]


# ---- runs screen --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_runs_screen_snapshot(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        assert table_ids(app)[:2] == ["baseline-s0-demo", "baseline-s1-demo"]
        assert cell(app, "ml_sa_ia-s0-demo", "status") == "running"
        assert cell(app, "ml_sa-s0-demo", "A_orig") == "99.2"
        assert cell(app, "ml_sa_ia-s0-demo", "A_orig").startswith("~")  # monitor estimate while training
        assert cell(app, "ml_sa_ia-s0-demo", "loss") == "0.8123"  # the live batch loss from progress.json
        assert_snapshot("runs", screen_text(app))

    run_app(demo, body)


@pytest.mark.slow
def test_live_updates_change_only_their_cells_and_keep_the_cursor(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        table = app.screen.query_one(RunsTable)
        await pilot.press("down", "down", "down")
        assert table.current_id == "ml_sa-s1-demo"
        written = table.cells_written
        store = Store(demo)
        update_record(store, "ml_sa_ia-s0-demo", lambda r: r.update(epoch=5, last={"train_loss": 0.4321,
                                                                                   "monitor_A_orig": 97.0}))
        (demo / "ml_sa_ia-s0-demo" / "progress.json").write_text('{"kind": "epoch", "epoch": {"epoch": 5, '
                                                                 '"epochs": 6}}')
        await wait_for(pilot, lambda: cell(app, "ml_sa_ia-s0-demo", "loss") == "0.4321", what="the new loss")
        assert "5/6" in cell(app, "ml_sa_ia-s0-demo", "progress")
        assert cell(app, "ml_sa_ia-s0-demo", "A_orig") == "~97.0"
        assert table.current_id == "ml_sa-s1-demo"
        assert table.cells_written - written <= 4  # progress, loss, A_orig (+ A_SA gone): not the whole table
        # A new run appears at the end, the cursor stays; a removed one disappears.
        record = dict(store.get("baseline-s0-demo"), id="zz-new-run", created="2026-02-01T00:00:00.000000Z")
        create_records(store, [record])
        delete_record(store, "baseline-s1-demo")
        await wait_for(pilot, lambda: "zz-new-run" in table_ids(app) and "baseline-s1-demo" not in table_ids(app))
        assert table_ids(app)[-1] == "zz-new-run"
        assert table.current_id == "ml_sa-s1-demo"

    run_app(demo, body)


@pytest.mark.slow
def test_filter_and_sort(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("slash", *"ml_sa_ia")
        assert table_ids(app) == ["ml_sa_ia-s0-demo", "ml_sa_ia-s1-demo"]
        await pilot.press("enter")  # back to the table, filter kept
        assert isinstance(app.focused, RunsTable)
        await pilot.press("escape")
        assert len(table_ids(app)) == 7
        await pilot.press("slash", *"fail", "enter")
        assert table_ids(app) == ["baseline-s2-demo"]
        await pilot.press("escape", "s")  # the sort picker, on the current key (created)
        assert isinstance(app.screen, SortPicker)
        await pilot.press("down", "enter")  # the next key: by id
        assert isinstance(app.screen, RunsScreen)
        assert table_ids(app) == sorted(table_ids(app))
        await pilot.press("s", "down", "enter")  # by status: running, queued, failed, cancelled, done
        assert table_ids(app)[:3] == ["ml_sa_ia-s0-demo", "ml_sa_ia-s1-demo", "baseline-s2-demo"]
        assert "sort status↑" in screen_text(app)
        await pilot.press("S")
        assert table_ids(app)[0] != "ml_sa_ia-s0-demo"

    run_app(demo, body)


@pytest.mark.slow
def test_missing_runs_dir_says_so(tmp_path: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        assert "No runs in" in screen_text(app) and "Press n to launch one" in screen_text(app)

    run_app(tmp_path / "nothing-here", body)


@pytest.mark.slow
def test_corrupt_store_shows_a_message_and_the_app_keeps_running(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        # Replaced in one step: a write_text truncates first, and a poll reading the empty file in between sees a
        # valid, empty index (0 runs) and would show that as the last good view.
        (demo / "corrupt.tmp").write_text("{ this is not json")
        os.replace(demo / "corrupt.tmp", demo / "store.json")
        screen = app.screen
        await wait_for(pilot, lambda: screen.error is not None, what="the error")
        # the banner is drawn on a later refresh than the one that set the error: wait for the text itself
        await wait_for(pilot, lambda: "Cannot read the run index" in screen_text(app), what="the error banner")
        assert "corrupt" in screen_text(app)
        assert len(table_ids(app)) == 7  # the last good view stays
        Store(demo).rebuild()  # the fix the message suggests
        await wait_for(pilot, lambda: screen.error is None, what="recovery")

    run_app(demo, body)


# ---- detail, results -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_detail_screen_curves_log_config_and_pca(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("down", "down", "enter")  # ml_sa-s0-demo
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.run_id == "ml_sa-s0-demo"
        await wait_for(pilot, lambda: screen.detail is not None)
        # wait for what is drawn, not for a time: the curves are drawn after the read arrives
        await wait_for(pilot, lambda: "━ A_SA" in screen_text(app) and "━ CE adv" in screen_text(app),
                       what="the curves")
        await settled(pilot)
        text = screen_text(app)
        assert "final (n=1000): A_orig 99.25" in text
        assert_snapshot("detail", text)
        await pilot.press("2")
        await wait_for(pilot, lambda: "epoch=6 train_loss=0.5577" in screen_text(app), what="the log tab")
        with open(demo / "ml_sa-s0-demo" / "log.txt", "a") as fh:
            fh.write("a new line from the worker\n")
        await wait_for(pilot, lambda: "a new line from the worker" in screen_text(app), what="the log tail")
        await pilot.press("3")
        await wait_for(pilot, lambda: "epochs *" in screen_text(app), what="the config tab")  # changed: marked
        await pilot.press("4")
        await wait_for(pilot, lambda: "No PCA embedding" in screen_text(app), what="the PCA tab")
        assert "amltui plot ml_sa-s0-demo --pca" in screen_text(app)
        points = [[float(c) + 0.1 * i, float(-c)] for i in range(3) for c in range(10)]
        pca = {"explained": [0.6, 0.3], "labels": list(range(10)) * 3, "natural": points,
               "perturbed": [[x * 0.5, y * 0.5] for x, y in points]}
        (demo / "ml_sa-s0-demo" / "pca.json").write_text(json.dumps(pca))
        await wait_for(pilot, lambda: "FGSM-perturbed (same axes)" in screen_text(app), what="the PCA plot")
        text = screen_text(app)
        assert "PC1 60% · PC2 30%" in text and "30 images" in text
        assert any(0x2800 < ord(ch) <= 0x28FF for ch in text)  # the dots are drawn
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

    run_app(demo, body)


@pytest.mark.slow
def test_results_screen_matches_export_and_writes_markdown(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ResultsScreen)
        await wait_for(pilot, lambda: screen.loaded)
        await settled(pilot)
        text = screen_text(app)
        rows = aggregate(Store(demo).all())
        for row in rows:  # the same cells as `amltui export`
            assert row.cells["A_orig"].text() in text
        assert "+0.35 (no spread measured, n=2)" in text  # ml_sa − baseline, paired over seeds 0 and 1
        assert "digit target table applied to non-digit data" in text  # synthetic data: A_IA is marked
        assert_snapshot("results", text)
        await pilot.press("e")
        await wait_for(pilot, lambda: list(demo.glob("results-*.md")), what="the exported file")
        path = next(demo.glob("results-*.md"))
        assert path.read_text() == render(rows, "md")
        await wait_for(pilot, lambda: any(str(path) in str(n.message) for n in app._notifications))

    run_app(demo, body)


# ---- actions -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cancel_asks_first_then_cancels_a_queued_run(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("slash", *"queued", "enter", "c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert Store(demo).get("ml_sa_ia-s1-demo")["status"] == "queued"
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: Store(demo).get("ml_sa_ia-s1-demo")["status"] == "cancelled")
        await pilot.press("escape")
        await wait_for(pilot, lambda: cell(app, "ml_sa_ia-s1-demo", "status") == "cancelled")
        await pilot.press("c")  # a finished run: a warning, no modal
        assert isinstance(app.screen, RunsScreen)

    run_app(demo, body)


@pytest.mark.slow
def test_delete_removes_the_run_and_its_folder(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("slash", *"failed", "enter", "d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: "baseline-s2-demo" not in table_ids(app), what="the row to go")
        assert not (demo / "baseline-s2-demo").exists()
        assert Store(demo).get("baseline-s2-demo") is None

    run_app(demo, body)


@pytest.mark.slow
def test_launch_form_shows_config_errors_instead_of_crashing(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, LaunchScreen)
        assert_snapshot("launch", screen_text(app))
        form.query_one("#overrides").value = "lr=fast"
        await pilot.press("ctrl+s")
        assert "lr" in screen_text(app) and "✗" in screen_text(app)
        form.query_one("#overrides").value = ""
        form.query_one("#seeds").value = "0,x"
        await pilot.press("ctrl+s")
        assert "seeds: 'x'" in screen_text(app)
        assert app.screen is form and len(Store(demo).all()) == 7  # nothing was created
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

    run_app(demo, body)




@pytest.mark.slow
def test_launch_a_real_run_quit_cancel_resume_and_finish(tmp_path: Path) -> None:
    """A real CPU run through the form; it outlives the app, is cancelled and resumed from the UI, and ends."""
    runs_dir = tmp_path / "runs"
    state: dict[str, str] = {}

    async def launch(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("n")
        form = app.screen
        form.query_one("#dataset").value = "synthetic"
        form.query_one("#overrides").value = " ".join(tiny_items(epochs=3))
        form.query_one("#gpus").value = "none"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the form to close")
        await wait_for(pilot, lambda: len(table_ids(app)) == 1, what="the new run's row")
        state["id"] = run_id = table_ids(app)[0]
        await wait_for(pilot, lambda: cell(app, run_id, "status") == "running", 30, "the run to start")
        # quitting here: the run goes on without the dashboard

    run_app(runs_dir, launch)
    run_id = state["id"]
    store = Store(runs_dir)

    async def cancel_resume(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await wait_for(pilot, lambda: (store.get(run_id) or {}).get("pid"), 60, "the worker's pid")
        assert store.get(run_id)["status"] == "running"  # still going after the first app quit
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: cell(app, run_id, "status") == "cancelled", 60, "the cancel")
        await pilot.press("R", "y")
        await wait_for(pilot, lambda: cell(app, run_id, "status") in ("queued", "running", "done"), 30)
        await wait_for(pilot, lambda: cell(app, run_id, "status") == "done", 120, "the resumed run to end")
        a_orig = store.get(run_id)["metrics"]["A_orig"]
        # a tiny run may end at chance: then ⊘ follows the number (amltui/app/runs/outcomes.py)
        assert cell(app, run_id, "A_orig") == f"{a_orig:.1f}" + (CHANCE_MARK if at_chance(store.get(run_id)) else "")
        assert "3/3" in cell(app, run_id, "progress")

    run_app(runs_dir, cancel_resume)
    record = store.get(run_id)
    assert record["status"] == "done" and record["epoch"] == 3
    assert "resuming" in (runs_dir / run_id / "log.txt").read_text()
