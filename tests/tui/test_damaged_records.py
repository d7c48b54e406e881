"""Issue 12, dashboard (Textual's Pilot): a bad record or progress.json marks its own row, never the table,
and screens recover once the file is repaired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.app.runs.store import Store
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.runs import RunsScreen
from tests.helpers import cell, poll_now, ready, run_app, screen_text, table_ids, wait_for

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


def set_in_store(runs: Path, run_id: str, **changes: object) -> None:
    data = json.loads((runs / "store.json").read_text())
    for doc in data["runs"].values():
        if doc["id"] == run_id:
            doc.update(changes)
    (runs / "store.json").write_text(json.dumps(data))


def test_a_bad_record_or_progress_file_marks_only_its_row(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        screen = await ready(app, pilot)
        assert isinstance(screen, RunsScreen)
        set_in_store(demo, "baseline-s1-demo", epoch=[1], metrics="abc")
        (demo / "ml_sa_ia-s0-demo" / "progress.json").write_text('{"kind": "batch"}')
        await wait_for(pilot, lambda: cell(app, "baseline-s1-demo", "status") == "damaged", what="the damaged row")
        assert screen.error is None  # no banner replacing the table
        assert len(table_ids(app)) == 7
        assert cell(app, "baseline-s0-demo", "status") == "done"
        assert cell(app, "ml_sa_ia-s0-demo", "status") == "running"  # its progress is unreadable, not the run
        assert "1 damaged" in screen_text(app)
        # A valid JSON progress file of the wrong shape, then a garbled one: still only that row.
        (demo / "ml_sa_ia-s0-demo" / "progress.json").write_text("[1, 2]")
        await poll_now(pilot, screen)  # a poll that read the bad file ran: only then does "unchanged" mean anything
        assert cell(app, "ml_sa_ia-s0-demo", "status") == "running" and screen.error is None
        Store(demo).rebuild()  # the repair the message suggests: run.json is intact
        await wait_for(pilot, lambda: cell(app, "baseline-s1-demo", "status") == "done", what="the repaired row")

    run_app(demo, body)


def test_a_deleted_run_folder_marks_its_row(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        import shutil

        shutil.rmtree(demo / "baseline-s2-demo")
        app.screen.poll(force=True)
        await wait_for(pilot, lambda: cell(app, "baseline-s2-demo", "status") == "damaged", what="the row")
        assert len(table_ids(app)) == 7 and app.screen.error is None

    run_app(demo, body)


def test_detail_screen_survives_bad_bytes_and_recovers_when_repaired(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        app.push_screen(DetailScreen("ml_sa-s0-demo"))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await wait_for(pilot, lambda: screen.detail is not None, what="the first read")
        folder = demo / "ml_sa-s0-demo"
        metrics = folder / "metrics.jsonl"
        good_metrics = metrics.read_bytes()
        good_record = (folder / "run.json").read_bytes()
        metrics.write_bytes(good_metrics + b'{"kind": "epoch", "epoch": 7, "x": "\xff\xfe"}\n\xff\n')
        (folder / "run.json").write_bytes(b"\xff not json")
        await wait_for(pilot, lambda: "damaged" in screen_text(app), what="the damaged header")
        with open(folder / "log.txt", "a") as fh:  # not frozen: the log tail still moves
            fh.write("still alive after the bad bytes\n")
        await pilot.press("2")
        await wait_for(pilot, lambda: "still alive after the bad bytes" in screen_text(app), what="the log")
        metrics.write_bytes(good_metrics)
        (folder / "run.json").write_bytes(good_record)
        await pilot.press("1")
        await wait_for(pilot, lambda: "final (n=1000): A_orig 99.25" in screen_text(app), what="recovery")
        assert "damaged" not in screen_text(app)

    run_app(demo, body)


def test_markup_in_stored_text_is_shown_verbatim(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        set_in_store(demo, "baseline-s2-demo", dataset="[/x]mnist[bold]")
        app.screen.poll(force=True)
        await wait_for(pilot, lambda: "[/x]mnist[bold]" in cell(app, "baseline-s2-demo", "dataset"),
                       what="the verbatim cell")
        assert app.screen.error is None

    run_app(demo, body)
