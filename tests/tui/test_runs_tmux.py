"""The runs screen's keys in a real terminal (tmux at 80×24, tests/conftest.py's `dashboard`): the metrics
beside the id, End/Home, Space marks, a key=value filter, the sort picker and `?`."""

from __future__ import annotations

import pytest

from tests.helpers import Tmux

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


def _row(screen: str, run_id: str) -> str:
    return next(line for line in screen.splitlines() if f" {run_id} " in line)


def test_runs_keys_in_tmux_at_80x24(dashboard: Tmux) -> None:
    tmux = dashboard
    screen = tmux.wait_for("baseline-s2-demo", "A_PGD", "? Help")
    assert all(v in _row(screen, "ml_sa-s0-demo") for v in ("99.2", "71.7", "81.4"))  # A_orig, A_PGD, A_IA
    tmux.keys("End", "Space")
    assert "●" in _row(tmux.wait_for("1 marked"), "baseline-s2-demo")
    tmux.keys("Home", "Space")
    assert "●" in _row(tmux.wait_for("2 marked"), "baseline-s0-demo")
    tmux.keys("Escape")  # no filter to clear: the marks go
    screen = tmux.wait_for("sort created", gone=("marked",))  # "sort created" was on screen before the key too
    assert "●" not in _row(screen, "baseline-s0-demo")

    tmux.keys("/", *"seed=1", "Space", *"ml", "Enter")  # Space types into the filter box, it marks nothing
    screen = tmux.wait_for("(2 shown)")
    assert "ml_sa-s1-demo" in screen and "ml_sa_ia-s1-demo" in screen and "baseline-s1-demo" not in screen
    assert "marked" not in screen
    tmux.keys("Escape", "s")
    tmux.wait_for("Sort runs by", "A_PGD", "PGD accuracy")
    tmux.keys("Down", "Enter")  # created → id
    tmux.wait_for("sort id↑")

    tmux.keys("?")
    tmux.wait_for("Keys", "Mark or unmark the run")
    tmux.keys("Escape")
    tmux.wait_for("sort id↑", "? Help")
