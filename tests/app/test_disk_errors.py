"""Issue 12: a full disk and a read-only runs folder give clear errors and lose nothing.

Real file systems where the machine allows it: a small tmpfs (full disk) and a tmpfs remounted read-only; both
need root (mount). Where mounting is not allowed those tests are skipped with the reason, and the full-disk
path is still covered by an ENOSPC injected at the checkpoint write.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from amltui.app.runs.store import Store
from core.errors import DiskFullError
from core.models import build_model
from core.train import save_checkpoint
from tests.helpers import ROOT, assert_clean, edit_record, invoke, make_runs, tiny_sets


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs, unmounted afterwards (skipped where this process may not mount)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the injected-ENOSPC test covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the file system of ``folder`` until about ``leave_bytes`` are free."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler


def checkpoint_args(path: Path) -> dict:
    model = build_model("small", embed_dim=4)
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(0)
    return dict(path=path, model=model, optimizer=opt, epoch=1, batch_gen=gen, miner_gen=gen, history=[])


def assert_disk_full_error(exc: DiskFullError, folder: Path) -> None:
    text = str(exc)
    assert text.startswith(f"no space left on {folder}") and "needs ~" in text and "MB" in text
    assert "amltui resume" in text


@pytest.mark.slow
def test_injected_enospc_at_the_checkpoint_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "checkpoint.pt"
    save_checkpoint(**checkpoint_args(target))
    before = target.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("core.fsio.os.fsync", no_space)  # checkpoints write through core/fsio.py
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(**checkpoint_args(target))
    assert_disk_full_error(info.value, tmp_path)
    assert target.read_bytes() == before  # the last checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left


@pytest.mark.slow
def test_a_real_full_disk_at_the_checkpoint_write(tmpfs: Path) -> None:
    target = tmpfs / "checkpoint.pt"
    save_checkpoint(**checkpoint_args(target))
    before = target.read_bytes()
    fill(tmpfs, len(before) // 2)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(**checkpoint_args(target))
    assert_disk_full_error(info.value, tmpfs)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmpfs.iterdir()) == ["checkpoint.pt", "filler"]


@pytest.mark.slow
def test_a_run_on_a_full_disk_fails_with_the_reason_and_commands_keep_working(tmpfs: Path) -> None:
    runs = tmpfs / "runs"
    runs.mkdir()
    fill(tmpfs, 1_000_000)  # room for the records, not for a 2 MB checkpoint
    args = ["run", "--variant", "baseline", "--dataset", "synthetic", "--epochs", "1", "--cpu-slots", "1",
            "--gpus", "none", "--id", "full", "--runs-dir", str(runs)]
    args += tiny_sets()
    proc = subprocess.run([sys.executable, "-m", "amltui", *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    record = Store(runs).get("full")
    assert record["status"] == "failed" and "no space left on" in record["error"], record
    assert not [p.name for p in (runs / "full").iterdir() if ".tmp" in p.name]
    # While still full, reading and cancelling commands work.
    for command in (["ls"], ["show", "full"], ["cancel", "--all"], ["ls", "--json"]):
        out = assert_clean(invoke(*command, "--runs-dir", runs), 0, stored_traceback=command[0] == "show")
        assert command[0] != "show" or "DiskFullError: no space left on" in out


@pytest.fixture
def read_only_runs(tmpfs: Path) -> Iterator[Path]:
    runs = tmpfs / "runs"
    store = make_runs(runs)
    edit_record(store, "b1", status="failed", error="boom")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    yield runs
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["run", "--dataset", "synthetic"], ["store", "rebuild"], ["rm", "b0", "--yes"], ["eval", "b0"],
    ["resume", "b1"], ["export", "--out", "{runs}/x.md"],
])
def test_a_read_only_runs_folder_gives_clear_errors(read_only_runs: Path, command: list[str]) -> None:
    before = (read_only_runs / "store.json").read_bytes()
    args = [c.format(runs=read_only_runs) for c in command]
    result = invoke(*args, "--runs-dir", read_only_runs)
    out = assert_clean(result)
    assert result.exit_code in (1, 2) and "error:" in out, out
    assert any(word in out for word in ("writable", "Read-only", "read-only")), out
    assert (read_only_runs / "store.json").read_bytes() == before
    assert json.loads(before)["runs"]


def test_an_atomic_write_on_a_full_disk_names_the_folder_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amltui.app import fsutil

    target = tmp_path / "run.json"
    target.write_text('{"old": true}')

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", no_space)
    with pytest.raises(OSError, match=f"no space left on {tmp_path} writing run.json") as info:
        fsutil.atomic_write_json(target, {"new": True})
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
