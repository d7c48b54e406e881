"""Issue 12: every option is checked before anything is written, and user or stored text is shown verbatim
(Rich markup in it is never applied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amltui.app.runs.store import Store
from tests.helpers import assert_clean, edit_record, invoke, make_runs


def nothing_written(runs: Path) -> bool:
    return not runs.exists() or [p.name for p in runs.iterdir() if p.name != "store.json.lock"] in ([], ["store.json"])


@pytest.mark.parametrize("options", [
    ["--gpus", "abc"], ["--gpus", "-1"], ["--gpus", "0,0"], ["--cpu-slots", "0"], ["--cpu-slots", "-5"],
    ["--slots-per-gpu", "0"], ["--epochs", "0"], ["--executor", "slurm", "--time", "0"],
    ["--executor", "slurm", "--gpus-per-node", "-1"], ["--device", "foo"], ["--executor", "foo"],
    ["--seeds", "a"], ["--detach", "--cpu-slots", "0"],
])
def test_bad_options_are_refused_before_any_run_is_queued(tmp_path: Path, options: list[str]) -> None:
    runs = tmp_path / "runs"
    out = assert_clean(invoke("run", "--dataset", "synthetic", "--runs-dir", runs, *options), 2)
    assert "error:" in out
    assert nothing_written(runs), sorted(p.name for p in runs.iterdir())
    assert not runs.exists() or Store(runs).all() == []


@pytest.mark.parametrize("options", [["--executor", "foo"], ["--cpu-slots", "0"], ["--gpus", "x"]])
def test_reproduce_refuses_bad_executor_options(tmp_path: Path, options: list[str]) -> None:
    runs = tmp_path / "runs"
    out = assert_clean(invoke("reproduce", "--dataset", "synthetic", "--runs-dir", runs, *options), 2)
    assert "error:" in out and nothing_written(runs)


def test_resume_refuses_a_bad_executor_before_requeueing(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", status="failed")
    assert_clean(invoke("resume", "b0", "--executor", "foo", "--runs-dir", tmp_path), 2)
    assert store.get("b0")["status"] == "failed"


# ---- Rich markup in user text ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["show", "[/x]"], ["run", "--set", "[/x]=1"], ["run", "--dataset", "[/x]"], ["run", "--seeds", "[/x]"],
    ["run", "--gpus", "[/x]"], ["run", "--set", "lr=[/x]"], ["run", "--device", "[/x]"],
    ["export", "--format", "[/x]"], ["export", "--where", "[/x]"], ["resume", "[/x]"], ["rm", "[/x]"],
    ["cancel", "[/x]"], ["eval", "[/x]"], ["logs", "[/x]"],
])
def test_markup_in_arguments_is_shown_verbatim(tmp_path: Path, args: list[str]) -> None:
    make_runs(tmp_path)
    result = invoke(*args, "--runs-dir", tmp_path)
    out = assert_clean(result)
    assert result.exit_code in (0, 2), out
    if result.exit_code == 2:
        assert "[/x]" in out  # the exact text, not swallowed as a closing tag


def test_altered_text_is_reported_exactly(tmp_path: Path) -> None:
    out = assert_clean(invoke("run", "--set", "lr=[bold red]spoof", "--dataset", "synthetic",
                              "--runs-dir", tmp_path), 2)
    assert "lr='[bold red]spoof'" in out


def test_a_stored_error_with_markup_can_always_be_shown(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    edit_record(store, "b0", status="failed", error="ValueError: unknown device '[/x]' in /data/exp[v2]/mnist",
                traceback="tail of a trace [bold]x[/bold]\n", metrics={})
    out = assert_clean(invoke("show", "b0", "--runs-dir", tmp_path), 0)
    assert "'[/x]' in /data/exp[v2]/mnist" in out and "[bold]x[/bold]" in out
    assert "b0" in assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)


def test_a_data_dir_with_brackets_is_reported_verbatim(tmp_path: Path) -> None:
    data_dir = tmp_path / "exp[v2]" / "mnist"
    out = assert_clean(invoke("invariance", "show", "--dataset", "mnist", "--data-dir", data_dir,
                              "--runs-dir", tmp_path / "runs"))
    assert "exp[v2]/mnist" in out


def test_queueing_many_runs_writes_the_index_once_and_a_refused_batch_leaves_nothing(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    from amltui.app.runs.folders import create_runs
    from core.config import RunConfig

    store = Store(tmp_path)
    writes = []
    real_write = type(store)._add_many  # the private writer create_records uses

    def counting(self, records):
        writes.append(len(records))
        return real_write(self, records)

    monkeypatch.setattr(type(store), "_add_many", counting)
    configs = [RunConfig.resolve("ml_sa", "quick", seed=s, dataset="synthetic") for s in range(60)]
    created = create_runs(store, configs)
    assert writes == [60] and len(store.all()) == 60
    assert all((tmp_path / r["id"] / "run.json").is_file() for r in created)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(FileExistsError):
        create_runs(store, configs[:2], ["fresh-one", created[0]["id"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # "fresh-one" was removed again
