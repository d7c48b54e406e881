"""The runs screen at 80×24 and 100×30 (Textual's Pilot, the demo runs folder): the frozen id and the metrics,
End/Home, key=value filters, the sort picker, marks with bulk cancel/delete and compare, the rebuild key, `?`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from amltui.app.runs.store import Store, update_record
from amltui.tui.dashboard import DashboardApp
from amltui.tui.data import SORTS, FilterSyntaxError, filter_rows, parse_filter
from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.help import HelpScreen
from amltui.tui.screens.runs import RunsScreen
from amltui.tui.screens.sort_picker import SortPicker
from amltui.tui.widgets.runs_table import RunsTable
from tests.helpers import assert_snapshot, cell, ready, row_line, run_app, screen_text, settled, table_ids, wait_for

DONE = ["baseline-s0-demo", "baseline-s1-demo", "ml_sa-s0-demo", "ml_sa-s1-demo"]





def table(app: DashboardApp) -> RunsTable:
    return app.screen.query_one(RunsTable)





def _tag(runs: Path, run_id: str, tags: list[str], sweep: str | None = None) -> None:
    update_record(runs, run_id, lambda record: record.update(tags=tags, sweep=sweep))


# ---- what shows at 80 and 100 columns --------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_beside_the_id_at_80_columns_and_the_id_stays_when_scrolling_sideways(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        text = screen_text(app)
        header = row_line(text, "run").split()
        assert header[:6] == ["run", "status", "A_orig", "A_PGD", "A_SA", "A_IA"]  # the headline order
        line = row_line(text, "ml_sa-s0-demo")
        assert len(line) <= 80 and all(v in line for v in ("done", "99.2", "71.7", "81.4"))
        assert_snapshot("runs_80x24", text)
        table(app).scroll_to(x=table(app).max_scroll_x, animate=False)
        await wait_for(pilot, lambda: "slot" in screen_text(app), what="the right end of the table")
        text = screen_text(app)
        assert "ml_sa-s0-demo" in text and "flags" in text  # the id column is frozen
        assert "A_orig" not in text  # it did scroll

    run_app(demo, body, size=(80, 24))


@pytest.mark.slow
def test_wider_terminal_shows_more_columns(demo: Path) -> None:
    _tag(demo, "ml_sa-s0-demo", ["paper"])

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        text = screen_text(app)
        header = row_line(text, "run")
        assert all(label in header for label in ("A_orig", "A_PGD", "A_SA", "A_IA", "progress", "variant", "seed"))
        assert "paper" not in text  # the tags are further right (tests/tui/test_narrow.py: 120 columns)
        assert_snapshot("runs_100x30", text)

    run_app(demo, body, size=(100, 30))


@pytest.mark.slow
def test_end_and_home_jump_to_the_last_and_first_row(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("down", "end")
        assert table(app).current_id == table_ids(app)[-1] == "baseline-s2-demo"
        assert table(app).scroll_x == 0  # End moved the cursor, not the view sideways
        await pilot.press("home")
        assert table(app).current_id == "baseline-s0-demo"

    run_app(demo, body, size=(80, 24))


@pytest.mark.slow
def test_the_header_counts_cancelled_runs(demo: Path) -> None:
    update_record(demo, "ml_sa_ia-s1-demo", lambda record: record.update(status="cancelled",
                                                                          error="cancelled by the user"))

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        first = screen_text(app).splitlines()[0]
        assert "1 failed · 1 cancelled" in first and "0 queued" in first

    run_app(demo, body, size=(80, 24))


# ---- filter and sort ---------------------------------------------------------------------------------------


def test_parse_filter_refuses_an_unknown_key_naming_the_valid_ones() -> None:
    """The dashboard's filter is the one grammar of amltui/app/runs/filters.py: its "did you mean" and value lists."""
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter("sed=1")
    assert "did you mean 'seed'" in str(info.value)
    assert "valid keys: variant, seed, status, dataset, tag, sweep or any record field or config key" in str(info.value)
    with pytest.raises(FilterSyntaxError, match="valid values: queued, running"):
        parse_filter("status=sleeping")
    assert parse_filter("seed=") == []  # still being typed: no term, no error


def test_a_run_without_a_sweep_does_not_match_sweep_none() -> None:
    from amltui.tui.data import make_row

    row = make_row({"id": "a-s0", "status": "done", "seed": 0, "sweep": None}, {}, 0)
    assert filter_rows([row], "sweep=none") == []
    assert filter_rows([row], "seed=0 status=DONE") == [row]  # seed 0 is a value; any case


@pytest.mark.slow
def test_key_value_filters_and_free_text_are_anded(demo: Path) -> None:
    _tag(demo, "ml_sa-s0-demo", ["paper", "fig2"], sweep="eps-sweep")
    _tag(demo, "baseline-s0-demo", ["paper"])

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        box = app.screen.query_one("#filter")
        cases = {
            "seed=1": ["baseline-s1-demo", "ml_sa-s1-demo", "ml_sa_ia-s1-demo"],
            "variant=ml_sa": ["ml_sa-s0-demo", "ml_sa-s1-demo"],  # exact: not ml_sa_ia
            "variant=ml_sa seed=0": ["ml_sa-s0-demo"],
            "status=failed": ["baseline-s2-demo"],
            "dataset=synthetic status=done": DONE,
            "tag=paper": ["baseline-s0-demo", "ml_sa-s0-demo"],
            "tag=paper ml_sa": ["ml_sa-s0-demo"],  # key=value and a word
            "sweep=eps-sweep": ["ml_sa-s0-demo"],
            "fig2": ["ml_sa-s0-demo"],  # tags are searched as text too
        }
        await pilot.press("slash")
        for text, expected in cases.items():
            box.value = text
            await wait_for(pilot, lambda e=expected: table_ids(app) == e, what=f"the rows of {text!r}")
        box.value = "variant=ml_sa"
        await wait_for(pilot, lambda: table_ids(app) == ["ml_sa-s0-demo", "ml_sa-s1-demo"])
        box.value = "variant=ml_sa sed=1"
        await wait_for(pilot, lambda: "filter: unknown key 'sed'" in screen_text(app), what="the filter error")
        assert "valid keys: variant, seed, status, dataset, tag, sweep or any" in " ".join(screen_text(app).split())
        assert table_ids(app) == ["ml_sa-s0-demo", "ml_sa-s1-demo"]  # the last good filter stays
        box.value = "variant=ml_sa seed=1"
        await wait_for(pilot, lambda: table_ids(app) == ["ml_sa-s1-demo"])
        assert "unknown key" not in screen_text(app)

    run_app(demo, body, size=(80, 24))


@pytest.mark.slow
def test_sort_picker_lists_every_key_and_S_reverses(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("s")
        assert isinstance(app.screen, SortPicker)
        await settled(pilot)
        text = screen_text(app)
        assert all(f" {key} " in text for key in SORTS)
        assert_snapshot("sort_picker", text)
        await pilot.press("escape")  # keeps the sort
        assert isinstance(app.screen, RunsScreen) and table(app).sort_column == "created"
        await pilot.press("s", *["down"] * SORTS.index("A_PGD"), "enter")
        assert table(app).sort_column == "A_PGD"
        assert table_ids(app)[:4] == ["baseline-s0-demo", "baseline-s1-demo", "ml_sa-s0-demo", "ml_sa-s1-demo"]
        await pilot.press("S")
        assert table_ids(app)[:4] == DONE[::-1]  # the runs without an A_PGD stay last either way
        assert "sort A_PGD↓" in screen_text(app)

    run_app(demo, body, size=(80, 24))


# ---- marks and bulk actions --------------------------------------------------------------------------------


@pytest.mark.slow
def test_marks_then_one_confirmation_cancels_all_marked_live_runs(demo: Path) -> None:
    store = Store(demo)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        ids = table_ids(app)
        await pilot.press("end", "space", "up", "space", "up", "space", "up", "space")  # the last four rows
        marked = ids[-4:][::-1]
        assert table(app).marked == marked
        assert all(cell(app, run_id, "mark") == "●" for run_id in marked)
        assert cell(app, ids[0], "mark") == ""
        assert "4 marked" in screen_text(app)
        await pilot.press("space")  # unmark the one under the cursor
        assert table(app).marked == marked[:3]
        await pilot.press("space", "c")
        assert isinstance(app.screen, ConfirmScreen)
        text = screen_text(app)
        assert "Cancel 2 runs?" in text and "ml_sa_ia-s0-demo" in text and "ml_sa_ia-s1-demo" in text
        assert "Left out (2)" in text and "baseline-s2-demo is already failed" in text  # not live: left out, named
        assert_snapshot("bulk_cancel", text)
        await pilot.press("y")
        await wait_for(pilot, lambda: store.get("ml_sa_ia-s1-demo")["status"] == "cancelled", what="the cancel")
        # one notice for both: the queued run is cancelled, the running one is asked to stop
        await wait_for(pilot, lambda: any("ml_sa_ia-s1-demo: cancelled" in str(n.message)
                                          and "ml_sa_ia-s0-demo: cancel recorded" in str(n.message)
                                          for n in app._notifications), what="one notice for both")
        assert store.get("ml_sa-s1-demo")["status"] == "done" and store.get("baseline-s2-demo")["status"] == "failed"
        assert table(app).marked == []

    run_app(demo, body, size=(80, 24))


@pytest.mark.slow
def test_marked_runs_are_deleted_together_after_one_yes(demo: Path) -> None:
    store = Store(demo)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("space", "down", "space", "d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Delete 2 runs?" in screen_text(app)
        await pilot.press("n")  # no: nothing happens, the marks stay
        assert table(app).marked == ["baseline-s0-demo", "baseline-s1-demo"]
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: not {"baseline-s0-demo", "baseline-s1-demo"} & set(table_ids(app)))
        assert store.get("baseline-s0-demo") is None and not (demo / "baseline-s1-demo").exists()
        assert len(table_ids(app)) == 5

    run_app(demo, body, size=(80, 24))


@pytest.mark.slow
def test_o_opens_the_marked_runs_together(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[list[str]] = []

    class CompareScreen(Screen):  # the contract with amltui/tui/screens/compare.py: CompareScreen(run_ids)
        BINDINGS = [("escape", "app.pop_screen", "Back")]

        def __init__(self, run_ids: list[str]) -> None:
            super().__init__()
            opened.append(run_ids)

    monkeypatch.setattr("amltui.tui.screens.runs.CompareScreen", CompareScreen)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("o")  # nothing marked: a warning
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("down", "down", "space", "down", "space", "o")
        assert isinstance(app.screen, CompareScreen)
        assert opened == [["ml_sa-s0-demo", "ml_sa-s1-demo"]]

    run_app(demo, body, size=(80, 24))


# ---- a corrupt index, help ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_corrupt_index_is_rebuilt_with_b_after_a_yes(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        screen = await ready(app, pilot)
        await pilot.press("b")  # a readable index: nothing to rebuild
        assert isinstance(app.screen, RunsScreen)
        (demo / "store.json").write_text("{ this is not json")
        await wait_for(pilot, lambda: "Press b to rebuild" in screen_text(app), what="the offer to rebuild")
        await pilot.press("b")
        assert isinstance(app.screen, ConfirmScreen)
        assert "amltui store rebuild" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.error is None and "Cannot read" not in screen_text(app), 30,
                       "the rebuilt index")
        assert len(Store(demo).all()) == 7
        assert list(demo.glob("store.json.corrupt*")) or list(demo.glob("*corrupt*"))  # kept aside, not deleted
        await wait_for(pilot, lambda: any("restored 7 run(s)" in str(n.message) for n in app._notifications))

    run_app(demo, body, size=(80, 24))


@pytest.mark.slow
def test_question_mark_lists_the_keys_of_every_screen(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await settled(pilot)
        text = screen_text(app)
        for words in ("Space", "Mark or unmark", "Overlay the marked runs", "End", "Last row", "Rebuild a corrupt run"):
            assert words in text, words
        assert_snapshot("help", text)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

    run_app(demo, body, size=(80, 24))
