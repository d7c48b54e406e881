"""docs/dashboard.md's key table against the screens' bindings (both ways), and each runs-screen key pressed.

A key in the table must be bound on its screen, with an action that exists, and pressing a runs-screen key must
change something (the screen, the focus, the cursor, the sort, the marks, or a notice); a bound key missing from
the table fails too. The help screen (`?`, amltui/tui/screens/help.py) reads the same bindings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.tui.dashboard import DashboardApp, help_sections
from amltui.tui.screens.help import KEY_LABELS
from amltui.tui.screens.runs import RunsScreen
from amltui.tui.widgets.runs_table import RunsTable
from tests.helpers import ROOT, ready, run_app, settled

KEYS_DOC = ROOT / "docs" / "dashboard.md"
PILOT_KEYS = {label: name for name, label in KEY_LABELS.items()}  # the doc's "Esc" → Textual's "escape"
# A key in the table is backticked: one character, a named key (Esc, Space, …) or Ctrl+X; `amltui export` or a
# path in backticks is not a key.
KEY = re.compile(r"^(.|[A-Z][A-Za-z]+|Ctrl\+.)$")


def documented_keys() -> dict[str, set[str]]:
    """screen → the keys its row of the dashboard key table names (KEY)."""
    section = KEYS_DOC.read_text(encoding="utf-8")
    table = section.split("| screen | keys |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        screen, keys = (cell.strip() for cell in line.strip().strip("|").split("|", 1))
        rows[screen] = {key for key in re.findall(r"`([^`]+)`", keys) if KEY.match(key)}
    return rows


def bound_keys() -> dict[str, set[str]]:
    return {title: {key for keys, _, _ in rows for key in keys} for title, rows in help_sections()}


def test_the_documented_key_table_lists_every_bound_key_and_nothing_else() -> None:
    documented, bound = documented_keys(), bound_keys()
    assert set(documented) == set(bound), "docs/dashboard.md's key table and the screens list different screens"
    for screen in bound:
        assert not documented[screen] - bound[screen], f"{screen}: documented but not bound (does nothing)"
        assert not bound[screen] - documented[screen], f"{screen}: bound but not in docs/dashboard.md's key table"


def test_every_binding_names_an_action_that_exists() -> None:
    from amltui.tui.screens import help as help_module

    owners = {title: rows for title, rows in help_sections()}
    assert owners["runs"] and owners["everywhere"]
    for cls in _binding_owners(help_module):
        for binding in cls.__dict__.get("BINDINGS", []):
            action = binding.action if hasattr(binding, "action") else binding[1]
            target, _, name = action.rpartition(".")
            owner = DashboardApp if target == "app" else cls
            assert hasattr(owner, f"action_{name.split('(')[0]}"), f"{cls.__name__}: {action} does not exist"


def _binding_owners(help_module) -> list[type]:
    """The classes help_sections reads (the screens, the runs table, the app)."""
    from amltui.tui.screens.confirm import ConfirmScreen
    from amltui.tui.screens.detail import DetailScreen
    from amltui.tui.screens.new_runs import LaunchScreen
    from amltui.tui.screens.results import ResultsScreen
    from amltui.tui.screens.sort_picker import SortPicker

    return [RunsScreen, RunsTable, DetailScreen, ResultsScreen, LaunchScreen, SortPicker, ConfirmScreen,
            help_module.HelpScreen, DashboardApp]


def _state(app: DashboardApp) -> tuple:
    screen = app.screen_stack[1] if len(app.screen_stack) > 1 else app.screen
    table = screen.query_one(RunsTable)
    return (type(app.screen).__name__, type(app.focused).__name__, table.cursor_row, table.sort_reverse,
            tuple(table.marked), len(app._notifications), table.scroll_x)


async def _back_to_the_table(app: DashboardApp, pilot: Pilot) -> RunsScreen:
    while not isinstance(app.screen, RunsScreen):
        app.pop_screen()
        await pilot.pause()
    screen = app.screen
    screen.query_one("#filter").display = False
    screen.table.focus()
    screen.table.clear_marks()
    screen.table.sort_reverse = False
    screen.table.move_cursor(row=2, animate=False)  # a done run in the middle: Home and End both move
    screen.table.scroll_to(x=min(10, screen.table.max_scroll_x), animate=False)  # ← and → both scroll
    await settled(pilot)
    return screen


@pytest.mark.slow
@pytest.mark.parametrize("screen_title", ["runs"])
def test_each_documented_runs_key_does_something(demo: Path, screen_title: str) -> None:
    keys = sorted(documented_keys()[screen_title])
    assert {"Space", "End", "Home", "?", "/"} <= set(keys)
    idle: list[str] = []

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        for key in keys:
            screen = await _back_to_the_table(app, pilot)
            if key == "Esc":
                await pilot.press("space")  # something for Escape to clear
            before = _state(app)
            await pilot.press(PILOT_KEYS.get(key, key))  # returns once the screen has handled the key
            await settled(pilot)
            if _state(app) == before:
                idle.append(key)
            assert screen.is_attached

    run_app(demo, body)
    assert not idle, f"documented keys that did nothing on the runs screen: {idle}"
