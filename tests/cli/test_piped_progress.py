"""A foreground run whose stdout is a pipe prints plain progress lines (amltui/cli/progress_bars.py)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from amltui.cli.progress_bars import RunProgress
from tests.helpers import ROOT, TINY


@pytest.mark.slow
def test_piped_foreground_run_prints_phase_and_epoch_lines(tmp_path: Path) -> None:
    tiny = {**TINY, "epochs": 2, "eval_ia": True}  # A_IA scored too: every phase prints
    sets = [f"--set={k}={v}" for k, v in tiny.items() if k not in ("dataset", "epochs", "train_subset", "test_subset")]
    cmd = [sys.executable, "-m", "amltui", "run", "--runs-dir", str(tmp_path), "--variant", "ml_sa_ia",
           "--dataset", tiny["dataset"], "--epochs", str(tiny["epochs"]), "--train-subset", str(tiny["train_subset"]),
           "--test-subset", str(tiny["test_subset"]), "--device", "cpu", "--cpu-slots", "1", *sets]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = re.search(r"queued 1 run\(s\) in .*: (\S+)", out.stdout).group(1)
    lines = [line.removeprefix(f"{run_id}: ") for line in out.stdout.splitlines() if line.startswith(run_id + ": ")]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(re.fullmatch(r"epoch \d/2: loss \d+\.\d{4}  A_orig .* \(monitor subset\)  \d+\.\ds", e) for e in epochs)
    assert "running" in lines
    assert f"data loaded: {tiny['train_subset']} train / {tiny['test_subset']} test images" in lines
    train_done = lines.index(f"invariance train done ({tiny['train_subset']})")
    assert train_done < lines.index(epochs[0])  # in the order they happened
    assert any(line.startswith("eval ") and line.endswith(f"done ({tiny['test_subset']})") for line in lines)
    assert re.match(r"done  A_orig \d+\.\d\d  A_SA \d+\.\d\d  A_PGD \d+\.\d\d", lines[-1]), lines[-1]


def test_run_progress_in_a_pipe_prints_each_phase_once_and_one_line_per_measurement() -> None:
    buffer = io.StringIO()
    with RunProgress(Console(file=buffer, width=120)) as progress:
        for done in (10, 20, 30, 30):
            progress.on_event("invariance", {"split": "test", "done": done, "total": 30})
        for done in (0, 2, 5):
            progress.on_event("eval", {"metric": "A_PGD", "done": done, "total": 5})
    lines = buffer.getvalue().splitlines()
    # the lines as they happened, and no render of the bars into the pipe when the display closes
    assert lines[:2] == ["invariance test: 10/30", "invariance test done (30)"]
    assert len(lines) == 3 and re.fullmatch(r"eval A_PGD: 5 images in 0:\d\d", lines[2])
