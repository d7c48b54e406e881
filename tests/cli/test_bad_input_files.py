"""Issue 23: hostile input never ends in a traceback, a hang or a wrong number. Each test is one reproduction of
the issue (its number in the test's docstring): damaged files in a run folder, bounded options, control
characters. Commands that could block on a FIFO run in a real subprocess under a timeout, so that a regression
fails the test instead of hanging the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amltui.app.fsutil import read_json
from amltui.app.runs.folders import run_dir
from amltui.app.runs.records import inspect
from amltui.app.runs.store import Store
from tests.helpers import ROOT, assert_clean, dead_pid, edit_record, invoke, make_runs

GUARD_S = 120  # a subprocess that has not ended by then hangs: the test fails (it never waits this long otherwise)


def cli(*args: str | Path, runs: Path) -> subprocess.CompletedProcess[str]:
    """amltui in its own process, killed if it hangs (a FIFO read that blocks would otherwise block the suite)."""
    env = {**os.environ, "AMLTUI_RUNS_DIR": str(runs), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "amltui", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=GUARD_S, stdin=subprocess.DEVNULL)


def clean(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    return " ".join(out.split())


# ---- reproduction 4: a nested JSON -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["show", "b0"], ["export"], ["tag", "b0", "x"],
                                  ["rm", "b0", "--yes"], ["store", "rebuild"]])
def test_a_deeply_nested_run_json_is_damage_not_a_recursion_error(tmp_path: Path, args: list[str]) -> None:
    """4: `[` * 100000 in run.json."""
    store = make_runs(tmp_path)
    run_dir(tmp_path, "b0").record_file.write_text("[" * 100_000)
    result = invoke(*args, "--runs-dir", tmp_path)
    out = assert_clean(result)
    assert result.exit_code in (0, 2), out
    if args[0] in ("ls", "show"):
        assert "damaged" in out
    if args == ["store", "rebuild"]:
        assert result.exit_code == 0 and store.get("b0")["damaged"]


def test_a_deeply_nested_index_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    """4: the same in store.json: a clear error naming the fix, then `store rebuild` restores every run."""
    store = make_runs(tmp_path)
    store.path.write_text('{"runs": ' + "[" * 100_000)
    out = assert_clean(invoke("ls", "--runs-dir", tmp_path), 2)
    assert "store rebuild" in out
    assert_clean(invoke("store", "rebuild", "--runs-dir", tmp_path), 0)
    assert {r["id"] for r in store.all()} == {"b0", "b1", "b2"}


def test_the_reader_bounds_depth_and_size(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 65 + "]" * 65)  # parses, but deeper than any file amltui writes
    with pytest.raises(ValueError, match="nests deeper"):
        read_json(deep)
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(OSError, match="more than amltui reads"):
        read_json(big, limit=1000)


# ---- reproduction 9: a FIFO in place of a run file ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "args"), [
    ("run.json", ["ls"]), ("run.json", ["show", "b0"]), ("config.json", ["show", "b0"]),
    ("metrics.jsonl", ["show", "b0"]), ("log.txt", ["logs", "b0"]), ("checkpoint.pt", ["eval", "b0"]),
    ("store.json", ["ls"]), ("store.json", ["show", "b0"]),
])
def test_a_fifo_in_place_of_a_file_is_refused_at_once(tmp_path: Path, name: str, args: list[str]) -> None:
    """9: a FIFO blocks nothing: the command ends (the subprocess guard fails the test if it hangs)."""
    make_runs(tmp_path)
    path = tmp_path / name if name == "store.json" else run_dir(tmp_path, "b0").path / name
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    out = clean(cli(*args, runs=tmp_path))
    if name in ("run.json", "store.json"):
        assert "regular file" in out or "damaged" in out, out


# ---- reproduction 6: mistyped fields, a config of [] ---------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"inv_agreement": {"train": 5}}, {"flag_details": [1]}, {"flag_details": [{"reasons": 5}]},
    {"checks": {"a": 5}}, {"autoattack": {"percent": "x"}}, {"pgd": {"steps": "many"}},
])
@pytest.mark.parametrize("command", ["show", "export", "ls"])
def test_mistyped_nested_fields_are_damage(tmp_path: Path, fields: dict, command: str) -> None:
    """6: never a traceback; the run is shown damaged, with the field named, and left out of the table."""
    store = make_runs(tmp_path)
    edit_record(store, "b0", **fields)
    args = [command, "b0"] if command == "show" else [command]
    result = invoke(*args, "--runs-dir", tmp_path)
    out = assert_clean(result, 0)
    assert "damaged" in out and next(iter(fields)) in out
    assert inspect(store.get("b0"))["status"] == "damaged"


@pytest.mark.parametrize("args", [["show", "b0"], ["eval", "b0"], ["rerun", "b0", "--detach"],
                                  pytest.param(["resume", "b0"], marks=pytest.mark.slow)])  # resume starts a worker
def test_a_config_json_of_a_list_is_damage(tmp_path: Path, args: list[str]) -> None:
    """6: config.json of `[]` is a clear message, never a traceback (nor a silent default config)."""
    store = make_runs(tmp_path)
    if args[0] == "resume":
        edit_record(store, "b0", status="failed")
    run_dir(tmp_path, "b0").config_file.write_text("[]")
    run_dir(tmp_path, "b0").checkpoint.write_bytes(b"not a checkpoint")
    result = invoke(*args, "--runs-dir", tmp_path)
    out = assert_clean(result)
    assert "JSON list" in out, out
    if args[0] != "show":
        assert result.exit_code != 0


# ---- reproduction 8: impossible accuracies ---------------------------------------------------------------


@pytest.mark.parametrize("metrics", [{"A_orig": 1e308}, {"A_SA": -5}, {"A_PGD": 250}])
def test_accuracies_outside_0_to_100_are_damage_never_data(tmp_path: Path, metrics: dict) -> None:
    """8: show/ls say damaged; export leaves the run out of the means (n drops to 2)."""
    store = make_runs(tmp_path)
    edit_record(store, "b0", metrics={"A_orig": 90.0, "A_SA": 40.0, **metrics})
    shown = assert_clean(invoke("show", "b0", "--runs-dir", tmp_path), 0)
    assert "damaged" in shown and "from 0 to 100" in shown
    listed = assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)
    assert "b0 damaged" in listed
    table = assert_clean(invoke("export", "--runs-dir", tmp_path), 0)
    assert "(n=2;" in table and "(n=3;" not in table, table  # n=2 seeds (then the SE_bin)


# ---- reproduction 5: a finished run stuck running --------------------------------------------------------


@pytest.mark.parametrize("stuck", ["running", "queued"])
def test_the_index_repairs_itself_from_run_json(tmp_path: Path, stuck: str) -> None:
    """5: index says running (dead pid), run.json says done → ls shows done, export counts it, rm works."""
    store = make_runs(tmp_path)
    edit_record(store, "b0", folder_too=False, status=stuck, pid=dead_pid(), host=os.uname().nodename)
    assert json.loads(run_dir(tmp_path, "b0").record_file.read_text())["status"] == "done"
    listed = assert_clean(invoke("ls", "--json", "--runs-dir", tmp_path), 0)
    assert store.get("b0")["status"] == "done", listed
    table = assert_clean(invoke("export", "--runs-dir", tmp_path), 0)
    assert "(n=3;" in table
    assert_clean(invoke("rm", "b0", "--yes", "--runs-dir", tmp_path), 0)
    assert store.get("b0") is None


@pytest.mark.parametrize("command", [["cancel", "b0"], ["export"], ["rm", "b0", "--yes"], ["eval", "b0"]])
def test_every_command_sees_the_repaired_record(tmp_path: Path, command: list[str]) -> None:
    """5: the first command after the crash already sees the run as done (no 'try again', no n=2)."""
    store = make_runs(tmp_path)
    edit_record(store, "b0", folder_too=False, status="running", pid=dead_pid(), host=os.uname().nodename)
    out = assert_clean(invoke(*command, "--runs-dir", tmp_path))
    assert "try again" not in out
    if command == ["export"]:
        assert "(n=3;" in out
    if command[0] == "rm":
        assert store.get("b0") is None
    if command[0] in ("cancel", "eval"):
        assert store.get("b0")["status"] == "done"
    if command[0] == "eval":  # judged done, so it goes on to the checkpoint (these runs have none)
        assert "only a finished run" not in out and "no checkpoint" in out


def test_store_get_is_untouched_by_a_healthy_index(tmp_path: Path) -> None:
    store = make_runs(tmp_path)
    before = Store(tmp_path).get("b0")
    assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)
    assert store.get("b0") == before  # nothing rewritten when the index and run.json agree


# ---- reproduction 13: terminal escapes ------------------------------------------------------------------

ESCAPES = "\x1b]0;TITLE\x07\x1b[2J"


@pytest.mark.parametrize("command", [["note", "b0", ESCAPES], ["show", "b0"], ["diff", "b0", "b1"], ["ls"],
                                     ["logs", "b0"]])
def test_control_characters_are_shown_escaped(tmp_path: Path, command: list[str]) -> None:
    """13: a note, an error and a log line holding escapes print them as text (\\x1b), never raw."""
    store = make_runs(tmp_path)
    edit_record(store, "b0", status="failed", note=ESCAPES, error="boom " + ESCAPES)
    with run_dir(tmp_path, "b0").log_file.open("a") as fh:
        fh.write("line " + ESCAPES + "\n")
    result = invoke(*command, "--runs-dir", tmp_path)
    out = assert_clean(result, 0)
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b" in out


def test_printable_escapes_c0_c1_and_bidi_but_keeps_text() -> None:
    from amltui.app.safetext import markup_safe, printable

    assert printable("a\x1b[2Jb\x9bc\u202ed\te") == "a\\x1b[2Jb\\x9bc\\u202ed\te"
    assert printable("one\ntwo") == "one\\x0atwo" and printable("one\ntwo", lines=True) == "one\ntwo"
    assert printable("é 数 [x]") == "é 数 [x]"
    assert markup_safe("[red]\x1b") == "\\[red]\\x1b"


# ---- reproduction 9: tag on many runs ---------------------------------------------------------------------


def test_tagging_many_runs_writes_the_index_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """9: `tag` on 200 runs of a big index was 200 rewrites of the index; now it is one."""
    from amltui.app.runs import store as store_module

    store = make_runs(tmp_path, seeds=tuple(range(12)))
    writes = []
    real = store_module.AtomicJSONStorage.write
    monkeypatch.setattr(store_module.AtomicJSONStorage, "write", lambda self, data: (writes.append(1),
                                                                                      real(self, data))[1])
    ids = [f"b{i}" for i in range(12)]
    out = assert_clean(invoke("tag", *ids, "paper", "--runs-dir", tmp_path), 0)
    assert len(writes) == 1, out
    assert all("paper" in store.get(i)["tags"] for i in ids)
    assert all("paper" in json.loads(run_dir(tmp_path, i).record_file.read_text())["tags"] for i in ids)
    writes.clear()
    assert_clean(invoke("tag", *ids, "paper", "--runs-dir", tmp_path), 0)  # nothing to change: no write at all
    assert writes == []


@pytest.mark.slow
def test_show_reads_only_the_tail_of_a_huge_metrics_file(tmp_path: Path) -> None:
    """9: show of a 200k-line metrics.jsonl prints the last epochs (it read only the file's tail)."""
    make_runs(tmp_path)
    line = {"kind": "epoch", "train_loss": 0.5, "seconds": 1.0}
    with run_dir(tmp_path, "b0").metrics_file.open("w") as fh:
        fh.writelines(json.dumps({**line, "epoch": e}) + "\n" for e in range(1, 200_001))
    out = assert_clean(invoke("show", "b0", "--runs-dir", tmp_path), 0)
    assert "the last 100 epochs" in out and "200000" in out and " 199900 " not in out
    lines = run_dir(tmp_path, "b0").read_metrics(tail=10)
    assert [m["epoch"] for m in lines] == list(range(199_991, 200_001))


# ---- reproductions 9, 10, 11 and 14: bounded options, refused before anything is queued ------------------


def nothing_queued(runs: Path) -> bool:
    return not runs.exists() or not (runs / "store.json").exists() or Store(runs).all() == []


@pytest.mark.parametrize(("options", "says"), [
    (["--seeds", "0-99999999"], "more than 1000 seeds"),
    (["--seeds", "0-999,1000-1999"], "more than 1000 seeds"),
    (["--seeds", "3000000000"], "largest seed"),
    (["--cpu-slots", "99999999999999999999999"], "from 1 to 1024"),
    (["--slots-per-gpu", "99999"], "at most 1024"),
    (["--epochs", "99999999999999999999999"], "out of range"),
    (["--threads", "99999999999999999999999", "--repeat"], "out of range"),
    (["--train-subset", "5000"], "holds only 2000"),
    (["--test-subset", "501"], "holds only 500"),
    (["--set", "holdout=1000000"], "hold-out must leave"),
    (["--set", "train_subset=100", "--set", "holdout=100"], "hold-out must leave"),
    (["--seeds", "0", "--set", "seed=1"], "--seeds"),
    (["--set", "variant=baseline"], "--variants"),
    (["--set", "preset=paper"], "--preset"),
    (["--grid", "seed=0,1"], "--seeds"),
    (["--seeds", "٣"], "not a whole number"),
    (["--seeds", "0-٣"], "not a range"),
    (["--set", "lr=1_000"], "not a valid float"),
    (["--set", "epochs=٣"], "not a valid int"),
    (["--set", "epochs=1e400"], "not a valid int"),
    (["--epochs", "٣"], "ASCII digits"),
    (["--cpu-slots", "1_0"], "ASCII digits"),
    (["--grid", "lr=0:1:99999999999"], "at most 10000 values"),
    (["--grid", "lr=٠:1:3"], "not a number"),
    (["--seeds", "0-999", "--grid", "lr=0:1:20"], "20000 runs"),
])
def test_out_of_bounds_options_are_refused_before_queueing(tmp_path: Path, options: list[str], says: str) -> None:
    """9, 10, 11, 14: each is a clear error naming the problem, at once, and nothing is queued."""
    runs = tmp_path / "runs"
    out = assert_clean(invoke("run", "--dataset", "synthetic", "--gpus", "none", "--runs-dir", runs, *options), 2)
    assert "error" in out.lower() and says in out, out
    assert nothing_queued(runs)


def test_an_empty_runs_dir_is_refused(tmp_path: Path) -> None:
    """10: `--runs-dir ""` was silently the current folder."""
    for args in (["run", "--dataset", "synthetic"], ["ls"], ["export"]):
        out = assert_clean(invoke(*args, "--runs-dir", ""), 2)
        assert "--runs-dir" in out and "empty" in out


def test_the_stated_maxima_still_take_the_largest_allowed_values() -> None:
    from amltui.app.service.launch import MAX_SEEDS, parse_seeds
    from core.config import MAX_EPOCHS, coerce

    assert parse_seeds(f"0-{MAX_SEEDS - 1}") == list(range(MAX_SEEDS))
    assert parse_seeds("5,0-2,2") == [5, 0, 1, 2]
    assert coerce("epochs", str(MAX_EPOCHS)) == MAX_EPOCHS and coerce("lr", "3e-4") == 3e-4


# ---- reproduction 6: a garbage checkpoint in a run that reproduce reuses ----------------------------------


@pytest.mark.slow
def test_a_garbage_checkpoint_costs_reproduce_a_figure_not_the_report(tmp_path: Path) -> None:
    """6: `reproduce` reusing a finished run whose checkpoint is garbage wrote no report (a traceback)."""
    from amltui.app.results.reproduce import write_report
    from amltui.app.science.pca import write_pca

    store = make_runs(tmp_path, seeds=(0, 1))
    run_dir(tmp_path, "b0").checkpoint.write_bytes(b"garbage, not a checkpoint")
    # the PCA drawer `reproduce` passes (amltui/app/service/reproduce.py)
    report = write_report(store, ["b0", "b1"], tmp_path / "report", "amltui reproduce",
                          draw_pca=write_pca).read_text()
    assert "pca-baseline.png not drawn" in report and "cannot be read" in report
    assert "90.50" in report  # the table is there (A_orig of b0 and b1: 90 and 91)


def test_the_index_is_not_repaired_while_the_worker_may_live(tmp_path: Path) -> None:
    """5: run.json says done but the pid the index names is alive on this host: no repair yet (it may be the
    worker between its two writes); a mistyped index record is left to `store rebuild`."""
    store = make_runs(tmp_path)
    edit_record(store, "b0", folder_too=False, status="running", pid=os.getpid(), host=os.uname().nodename)
    edit_record(store, "b1", folder_too=False, status="running", pid="abc", host=os.uname().nodename)
    assert_clean(invoke("ls", "--runs-dir", tmp_path), 0)
    assert store.get("b0")["status"] == "running" and store.get("b1")["status"] == "running"


def test_a_run_folder_named_with_escapes_is_listed_escaped(tmp_path: Path) -> None:
    """13: run ids read from the file system (a folder the index does not list) are shown escaped too."""
    make_runs(tmp_path)
    planted = tmp_path / "x\x1b[2J"
    planted.mkdir()
    (planted / "run.json").write_text("{}")
    for args in (["ls"], ["store", "rebuild"]):
        result = invoke(*args, "--runs-dir", tmp_path)
        out = assert_clean(result, 0)
        assert "\x1b" not in result.output and "x\\x1b[2J" in out


def test_a_garbage_checkpoint_is_skipped_by_reproduce_curves(tmp_path: Path) -> None:
    """6: `reproduce --curves` over a reused run with a garbage checkpoint warns and goes on."""
    import contextlib

    from amltui.app.service.reproduce import ReproduceRequest, measure_curves

    class Front:
        warnings: list[str] = []

        def warn(self, text: str) -> None:
            self.warnings.append(text)

        @contextlib.contextmanager
        def progress(self):  # noqa: ANN202
            yield lambda kind, data: None

    store = make_runs(tmp_path, seeds=(0,))
    run_dir(tmp_path, "b0").checkpoint.write_bytes(b"garbage, not a checkpoint")
    front = Front()
    measure_curves(store, ["b0"], ReproduceRequest(curves=True), front)
    assert len(front.warnings) == 1 and "b0: no curve, checks or A_AA" in front.warnings[0]
    assert "cannot be read" in front.warnings[0]


def test_a_report_without_a_pca_drawer_says_how_to_draw_the_figure(tmp_path: Path) -> None:
    """write_report loads no model itself (amltui/app/results/ never imports torch): without the service's PCA
    drawer a run with no pca.png costs that figure, with the command that draws it."""
    from amltui.app.results.reproduce import write_report

    store = make_runs(tmp_path, seeds=(0, 1))
    report = write_report(store, ["b0", "b1"], tmp_path / "report", "amltui reproduce").read_text()
    assert "pca-baseline.png not drawn: run b0 has no pca.png yet (`amltui plot b0` draws it)" in report
    assert "90.50" in report
