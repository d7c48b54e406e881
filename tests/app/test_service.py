"""The service layer (amltui/app/service/): one implementation under the command line and the dashboard, one
seed syntax, one user-error type, no torch on import; the command line's Typer conventions (Enum choices in
--help, refused values as user errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from amltui.app import service
from amltui.app.errors import UserError
from amltui.app.runs.store import Store
from amltui.tui import actions
from tests.helpers import ROOT, assert_clean, edit_record, invoke, make_runs


@pytest.mark.slow
def test_importing_the_service_the_cli_and_the_actions_loads_no_torch() -> None:
    code = ("import sys, amltui.app.service, amltui.app.results.reproduce, amltui.cli, amltui.tui.actions; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(("text", "seeds"), [
    ("0", [0]), ("0,1,2", [0, 1, 2]), ("0-2", [0, 1, 2]), ("0-2,7", [0, 1, 2, 7]), ("3, 1-2", [3, 1, 2]),
    ("1,1,0-1", [1, 0]),
])
def test_one_seed_syntax_lists_ranges_and_mixes(text: str, seeds: list[int]) -> None:
    assert service.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "2-1", "-1", "0-x", "1.5"])
def test_bad_seeds_are_a_user_error_with_the_fix(text: str) -> None:
    with pytest.raises(UserError) as caught:
        service.parse_seeds(text)
    assert caught.value.fix and "0-2" in str(caught.value)


def test_the_cli_takes_seed_ranges_like_the_dashboard(tmp_path: Path) -> None:
    with mock.patch("amltui.cli.lifecycle.dispatch") as dispatch:
        out = assert_clean(invoke("run", "--variants", "baseline,ml_sa", "--seeds", "0-1,5", "--dataset",
                                  "synthetic", "--runs-dir", tmp_path), 0)
    records = Store(tmp_path).all()
    assert sorted((r["variant"], r["seed"]) for r in records) == [
        (v, s) for v in ("baseline", "ml_sa") for s in (0, 1, 5)]
    assert "queued 6 run(s)" in out and dispatch.call_count == 1


def test_help_shows_the_choices_and_a_bad_choice_is_a_user_error(tmp_path: Path) -> None:
    help_text = assert_clean(invoke("run", "--help"), 0)
    assert "paper|quick|authors" in help_text and "local|slurm" in help_text
    assert "mnist|fashion-mnist|mnist-sample|synthetic" in help_text
    assert "md|csv|latex" in assert_clean(invoke("export", "--help"), 0)
    out = assert_clean(invoke("run", "--preset", "slow", "--runs-dir", tmp_path / "r"), 2)
    assert "error:" in out and "--preset" in out and "quick" in out
    assert not (tmp_path / "r").exists()


def test_the_cli_and_the_dashboard_refuse_alike(tmp_path: Path) -> None:
    store = make_runs(tmp_path, seeds=(0,))
    with pytest.raises(UserError, match="already done") as caught:
        actions.resume(tmp_path, "b0")
    assert "amltui eval b0" in (caught.value.fix or "")
    out = assert_clean(invoke("resume", "b0", "--runs-dir", tmp_path), 2)
    assert f"error: {caught.value}" in out
    edit_record(store, "b0", status="queued")
    with pytest.raises(UserError, match="still queued, running or stalled"):
        actions.delete(tmp_path, "b0")
    assert "still queued, running or stalled" in assert_clean(invoke("rm", "b0", "--yes", "--runs-dir", tmp_path), 2)
    assert (tmp_path / "b0").is_dir() and Store(tmp_path).get("b0") is not None


def test_a_run_id_prefix_resolves_or_is_refused_with_the_fix(tmp_path: Path) -> None:
    store = make_runs(tmp_path, seeds=(0, 1))
    assert service.find_run(store, "b1")["id"] == "b1"
    with pytest.raises(UserError) as caught:
        service.find_run(store, "b")
    assert "matches 2 runs" in caught.value.message and caught.value.fix == "be more specific"
    with pytest.raises(UserError, match="no run 'zz'"):
        service.find_run(store, "zz")


def test_export_goes_through_the_service_for_both_front_ends(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    text, emptied = service.results_table(service.records(store), "csv", where=["seed=1"])
    assert emptied is None and "baseline" in text
    path = actions.export_results(tmp_path)
    assert path.read_text() == service.results_table(service.records(store), "md")[0]
    with pytest.raises(UserError, match="unknown format"):
        service.results_table([], "xml")
    _, emptied = service.results_table(service.records(store), "md", where=["seed=7"])
    assert emptied and "seed=7" in emptied


@pytest.mark.slow
def test_a_bad_request_writes_nothing(tmp_path: Path) -> None:
    request = service.LaunchRequest(variants=["baseline"], seeds=[0, 1], dataset="synthetic", run_id="one")
    with pytest.raises(UserError, match="--id names a single run"):
        service.launch(Store(tmp_path), request)
    with pytest.raises(UserError, match="lr"):
        service.launch(Store(tmp_path), service.LaunchRequest(variants=["baseline"], seeds=[0],
                                                              dataset="synthetic", overrides=["lr=-1"]))
    assert Store(tmp_path).all() == []
