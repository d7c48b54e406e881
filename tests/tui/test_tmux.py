"""The real dashboard in a real terminal: tmux at 80×24, keys sent with send-keys, the screen read back.

Needs the tmux binary (Debian: apt-get install tmux). A private tmux server (-L) keeps it away from others.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import Tmux

pytestmark = pytest.mark.slow  # every test here spawns a process, trains or drives the dashboard


def test_dashboard_in_tmux_at_80x24(dashboard: Tmux) -> None:
    tmux = dashboard
    screen = tmux.wait_for("baseline-s0-demo", "ml_sa_ia-s0-demo", "running", "n Launch")
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith(" runs · 7 runs · 1 running · 1 queued")
    assert "r Results" in lines[-1] and "q Quit" in lines[-1]
    row = next(line for line in lines if " ml_sa-s0-demo " in line)
    assert "done" in row and "6/6" in row and "ml_sa" in row

    tmux.keys("Down", "Down", "Enter")  # the third run: ml_sa-s0-demo
    # Everything a person should see on the detail screen, waited for together (the screen paints in parts).
    screen = tmux.wait_for("ml_sa-s0-demo  done", "final (n=1000): A_orig 99.25", "━ CE adv", "epoch 6", "Curves",
                           "Config", "esc Back")
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in screen)  # the braille curves are drawn
    tmux.keys("2")
    tmux.wait_for("epoch=6 train_loss=0.5577")

    tmux.keys("Escape")
    tmux.wait_for("sort created")
    tmux.keys("r")
    screen = tmux.wait_for("Results", "98.94 ± 0.05 (n=2)", "+0.35 (no spread measured, n=2)", "e Export")
    assert screen.index("S1   baseline") < screen.index("S1   ml_sa")  # the baseline first in its setting
    assert "S1 = synthetic · quick" in screen

    # Back on the runs screen before `q`: an Escape followed closely by a key reads as Alt+key in a terminal.
    tmux.keys("Escape")
    tmux.wait_for("sort created")
    tmux.keys("q")
    deadline = time.monotonic() + 30
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tmux.alive(), "q did not quit the dashboard"
