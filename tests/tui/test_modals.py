"""The dashboard's modals carry their own look (DEFAULT_CSS): in a bare Textual app, without the dashboard's
stylesheet, they are the same centred, bordered boxes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.app import App
from textual.geometry import Region
from textual.screen import ModalScreen

from amltui.tui.screens.confirm import ConfirmScreen
from amltui.tui.screens.new_runs import LaunchScreen

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


def dialog_box(modal: ModalScreen) -> tuple[int, int, int, int, str, list[Region]]:
    """(x, y, width, height, border style) of the modal's #dialog in an 80×24 app with no stylesheet of its own,
    and the regions of its form's cells (if any)."""
    found: list[tuple[int, int, int, int, str, list[Region]]] = []

    async def main() -> None:
        app: App[None] = App()
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(modal)
            await pilot.wait_for_scheduled_animations()
            box = modal.query_one("#dialog")
            region = box.region
            labels = [widget.region for widget in modal.query("#form > *")]
            found.append((region.x, region.y, region.width, region.height, box.styles.border_top[0], labels))

    asyncio.run(main())
    return found[0]


def test_confirm_is_a_centred_bordered_box_without_the_app_stylesheet() -> None:
    x, y, width, height, border, _ = dialog_box(ConfirmScreen("Delete run [b]x[/b]?", danger=True))
    assert width == 60 and border == "thick"
    assert x == (80 - width) // 2 and 0 < y and y + height < 24  # in the middle, not at the top left


def test_the_launch_form_lays_out_its_grid_without_the_app_stylesheet(tmp_path: Path) -> None:
    x, y, width, height, border, cells = dialog_box(LaunchScreen(tmp_path))
    assert width == 76 and border == "thick" and x == 2 and len(cells) == 24
    labels, fields = cells[0::2], cells[1::2]
    # The two-column grid: labels in an 11-column first column, one gutter, the fields after; one row each.
    assert {r.x for r in labels} == {labels[0].x} and {r.x for r in fields} == {labels[0].x + 12}
    assert [r.y for r in labels] == [labels[0].y + i for i in range(12)]
