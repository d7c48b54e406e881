"""Issue 23, dashboard: hostile files and keys never leave a traceback, a hang or an unreadable message.

Each case runs tests/hostile_tui_driver.py (Textual's Pilot) in its own process under a timeout, so a FIFO that
blocked a read fails the test instead of hanging the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard

HERE = ROOT / "tests"  # hostile_tui_driver.py and helpers.py
GUARD_S = 120  # generous: the driver ends in a few seconds; past this it hangs


def drive(case: str, runs: Path) -> dict:
    """The driver's findings; it runs in the runs folder's parent so that paths on screen stay short."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
    proc = subprocess.run([sys.executable, str(HERE / "hostile_tui_driver.py"), case, runs.name],
                          capture_output=True, text=True, timeout=GUARD_S, env=env, cwd=runs.parent)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["ended"]
    return seen


def test_quit_then_sort_quickly_does_not_traceback(tmp_path: Path) -> None:
    """14: `q` then `s` → NoMatches in SortPicker on exit."""
    drive("quit-then-sort", tmp_path / "runs")


def test_the_open_runs_folder_deleted_reads_deleted(tmp_path: Path) -> None:
    """14: the detail said "status is <Status.DAMAGED…>"; now it says what happened."""
    screen = " ".join(drive("deleted", tmp_path / "runs")["screen"].split())
    assert "damaged: its folder" in screen and "was deleted" in screen
    assert "<Status" not in screen and "None" not in screen


@pytest.mark.parametrize("case", ["fifo-run.json", "fifo-log.txt", "fifo-progress.json", "fifo-config.json"])
def test_a_fifo_in_place_of_a_run_file_neither_hangs_nor_blocks_quit(tmp_path: Path, case: str) -> None:
    """9: "loading…" forever, or a `q` that cannot quit; the driver ends (and quits with q) within the guard."""
    seen = drive(case, tmp_path / "runs")
    if case == "fifo-run.json":
        assert "not a regular file" in " ".join(seen["screen"].split())


def test_control_characters_in_the_dashboard_are_shown_escaped(tmp_path: Path) -> None:
    """13: escapes in a record's error and in log.txt are shown as text in the table, the header and the log."""
    seen = drive("escapes", tmp_path / "runs")
    for text in (seen["table"], seen["screen"]):
        assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b" in seen["screen"]
