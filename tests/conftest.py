"""Shared fixtures (plain helpers and the one tiny configuration, TINY, are in tests/helpers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from amltui.tui.demo import seed_demo
from tests.helpers import Tmux

# Tests compare numbers across runs: one intra-op thread keeps CPU reductions identical and the suite polite.
torch.set_num_threads(1)


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The made-up demo runs folder, as the relative path ``runs`` (the screens show it: snapshots stay stable)."""
    monkeypatch.chdir(tmp_path)
    seed_demo(Path("runs"))
    return Path("runs")


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Tmux]:
    """The real dashboard on the demo runs folder in a private tmux server at 80×24 (skipped without tmux)."""
    seed_demo(tmp_path / "runs")
    tmux = Tmux(f"amltui-test-{os.getpid()}", "dash")
    command = f"{sys.executable} -m amltui.tui --runs-dir runs"
    tmux("new-session", "-d", "-s", "dash", "-x", "80", "-y", "24", "-c", str(tmp_path), command)
    try:
        yield tmux
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
