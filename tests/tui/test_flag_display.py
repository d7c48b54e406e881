"""The dashboard shows the PGD monitor curve and marks a flagged run (Textual's Pilot, a demo runs folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.app.runs.store import update_record
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.detail import DetailScreen
from tests.helpers import cell, ready, run_app, screen_text, wait_for

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard

RUN = "ml_sa-s0-demo"
DETAIL = {"name": "gradient_masking", "rule": "final A_SA − A_PGD > 30 points",
          "reasons": ["A_SA 96.80 − A_PGD 1.00 = 95.80 > 30"], "numbers": {"gap": 95.8}}


def _flag_and_add_pgd(runs: Path) -> None:
    folder = runs / RUN
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if line.get("kind") == "epoch":
            line["monitor_A_PGD"] = 0.0  # a fully masked run: its PGD curve is flat at zero and must still show
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    update_record(runs, RUN, lambda record: record.update(flags=["gradient_masking"], flag_details=[DETAIL]))


def test_flag_mark_in_the_table_and_reasons_and_pgd_curve_in_the_detail(demo: Path) -> None:
    _flag_and_add_pgd(demo)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        assert cell(app, RUN, "A_SA").endswith("⚠")
        assert not cell(app, "baseline-s0-demo", "A_SA").endswith("⚠")
        await pilot.press("down", "down", "enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.run_id == RUN
        await wait_for(pilot, lambda: screen.detail is not None)
        await wait_for(pilot, lambda: "━ A_PGD" in screen_text(app), what="the accuracy chart")
        text = screen_text(app)
        assert "⚠ gradient_masking" in text
        assert "━ A_PGD" in text  # the legend of the accuracy chart

    run_app(demo, body)
