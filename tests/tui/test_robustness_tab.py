"""The dashboard's Robustness tab on the run detail screen (Textual Pilot, 80×24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.detail import DetailScreen
from tests.helpers import ready, run_app, screen_text, wait_for

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


def test_robustness_tab_shows_the_curve_checks_and_flags(demo: Path) -> None:
    folder = demo / "ml_sa-s0-demo"

    async def body(app: DashboardApp, pilot) -> None:
        await ready(app, pilot)
        await pilot.press("down", "down", "enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await wait_for(pilot, lambda: screen.detail is not None)
        await pilot.press("5")
        await wait_for(pilot, lambda: "no curve yet: `amltui eval ml_sa-s0-demo --curve` computes it"
                       in screen_text(app), what="the empty tab")  # the chart names the command, not "no data"
        assert "no data yet" not in screen_text(app)
        assert "amltui eval ml_sa-s0-demo --checks" in screen_text(app)
        curve = {"n": 200, "eps_s": 0.3, "grid": [0.0, 0.3, 0.6], "labels": {"fgsm": "FGSM", "pgd-40x1-s0": "PGD-40"},
                 "curves": {"fgsm": [99.0, 60.0, 30.0], "pgd-40x1-s0": [99.0, 1.0, 0.0]}}
        (folder / "curve.json").write_text(json.dumps(curve))
        record = json.loads((folder / "run.json").read_text())
        record["flags"] = ["check_fgsm_gt_pgd"]
        record["checks"] = {"summary": "checks: 0/1 passed", "n": 200, "eps_s": 0.3, "results": [
            {"flag": "check_fgsm_gt_pgd", "label": "(d) FGSM ≈ PGD", "passed": False, "numbers": {},
             "message": "FGSM 60.00% − PGD 1.00% = 59.00 points (> 20)"}]}
        (folder / "run.json").write_text(json.dumps(record))
        await wait_for(pilot, lambda: "FAIL (d) FGSM ≈ PGD" in screen_text(app), what="the checks")
        text = screen_text(app)
        assert "━ FGSM" in text and "━ PGD-40" in text and "ε 0.6" in text
        assert "curve on n=200 test images" in text
        assert any(0x2800 < ord(ch) <= 0x28FF for ch in text)
        # A_AA names its version, iterations and n; an old record (no components) is the 10-iteration ensemble
        record["autoattack"] = {"version": "standard", "eps": 0.3, "n": 200, "percent": 0.5, "robust": 1,
                                "broken_by": {"apgd-ce": 180}}
        (folder / "run.json").write_text(json.dumps(record))
        await wait_for(pilot, lambda: "A_AA 0.50%" in screen_text(app), what="the A_AA line")
        assert "AutoAttack standard-fast" in screen_text(app) and "10 it." in screen_text(app)
        # the curve's AutoAttack line has points only where it was run (null elsewhere)
        aa_key = "aa-standard@apgd-ce:100+apgd-t:100x9+fab-t:100x9+square:5000"
        curve["curves"][aa_key], curve["labels"][aa_key] = [99.0, 0.5, None], "AA standard 100it"
        (folder / "curve.json").write_text(json.dumps(curve))
        await wait_for(pilot, lambda: "AA standard 100it" in screen_text(app), what="the AutoAttack legend")

    run_app(demo, body)
