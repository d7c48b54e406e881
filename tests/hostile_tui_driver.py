"""Drives the dashboard (Textual's Pilot) through one hostile case of issue 23 and prints what the screen shows.

Run by tests/tui/test_hostile_files.py in a subprocess under a timeout: a FIFO that blocked a read would hang this
process, never the test suite. Usage: python hostile_tui_driver.py CASE RUNS_DIR
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

from helpers import SIZE, poll_now, ready, screen_text, settled, wait_for

from amltui.tui.dashboard import DashboardApp
from amltui.tui.demo import seed_demo
from amltui.tui.screens.detail import DetailScreen

ESCAPES = "\x1b]0;TITLE\x07\x1b[2J"


async def open_detail(app: DashboardApp, pilot) -> str:
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
    screen = app.screen
    # a first read of the run's files came back (a FIFO among them must not block it)
    await wait_for(pilot, lambda: screen.detail is not None, what="the run's first read")
    return screen.run_id


async def drive(case: str, runs: Path) -> dict:
    app = DashboardApp(runs, poll_interval=0.2, detail_interval=0.3)
    seen: dict = {}
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        if case == "quit-then-sort":  # `q` then `s` in one burst: the picker opens as the app closes
            app.exit()
            screen.action_sort()
            await pilot.pause()  # let the picker's messages run while the app closes
        elif case in ("deleted", "fifo-run.json"):
            run_id = await open_detail(app, pilot)
            if case == "deleted":
                shutil.rmtree(runs / run_id)
            else:  # made aside and renamed over run.json: a read in between never finds the file missing
                os.mkfifo(runs / run_id / "run.json.fifo")
                os.replace(runs / run_id / "run.json.fifo", runs / run_id / "run.json")
            await wait_for(pilot, lambda: "damaged" in screen_text(app), what="the damaged detail")
            seen["screen"] = screen_text(app)
            await pilot.press("q")
        elif case in ("fifo-log.txt", "fifo-progress.json", "fifo-config.json"):
            name = case.removeprefix("fifo-")
            for folder in runs.iterdir():
                if (folder / "run.json").exists():
                    (folder / name).unlink(missing_ok=True)
                    os.mkfifo(folder / name)
            await poll_now(pilot, screen)
            await open_detail(app, pilot)
            await pilot.press("2")  # the Log tab
            await settled(pilot)
            seen["screen"] = screen_text(app)
            await pilot.press("q")
        elif case == "escapes":
            record_file = runs / "baseline-s0-demo" / "run.json"
            record = json.loads(record_file.read_text())
            record.update(status="failed", error="boom " + ESCAPES, note=ESCAPES, metrics=None)
            record_file.write_text(json.dumps(record))
            with (runs / "baseline-s0-demo" / "log.txt").open("a") as fh:
                fh.write("line " + ESCAPES + "\n")
            from amltui.app.runs.store import Store

            Store(runs).rebuild()
            await poll_now(pilot, screen)
            seen["table"] = screen_text(app)
            app.push_screen(DetailScreen("baseline-s0-demo"))
            await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
            await wait_for(pilot, lambda: "boom" in screen_text(app), what="the error in the header")
            await pilot.press("2")
            await wait_for(pilot, lambda: "line " in screen_text(app), what="the log line")
            seen["screen"] = screen_text(app)
    seen["ended"] = True
    return seen


def main() -> None:
    case, runs = sys.argv[1], Path(sys.argv[2])
    seed_demo(runs)
    print(json.dumps(asyncio.run(drive(case, runs))))


if __name__ == "__main__":
    main()
