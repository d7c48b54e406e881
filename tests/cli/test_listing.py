"""Daily use of the command line (issue #13): `ls --sort/--where/--status` with error and tags columns, a run's
quiet phase in `ls`, `show`'s layout, whole-phrase help summaries, `--runs-dir` before the command, and the
rough edges a new user met (--no-pca, --human-sets-dir, a typo'd runs folder, an unknown --set key)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from amltui.app.runs.folders import create_run
from amltui.app.runs.progress import LiveRuns, describe, duration, phase_progress
from amltui.app.runs.records import Status
from amltui.app.runs.states import change_record
from amltui.app.runs.store import Store
from amltui.cli import app
from amltui.cli.help_text import first_sentence, summary
from core.config import RunConfig

runner = CliRunner()
ERROR = "DataError: [bold]no such file[/] /data/train-images-idx3-ubyte.gz (pass --data-dir DIR holding it)"


def invoke(*args: str, width: int = 160, env: dict | None = None):
    return runner.invoke(app, list(args), terminal_width=width, env={"COLUMNS": str(width), **(env or {})})


def make_runs(root: Path) -> dict[str, str]:
    """Three real run folders and records: done (metrics), failed (an error with markup), running (tags)."""
    store = Store(root)
    ids = {}
    for seed, (variant, status) in enumerate([("baseline", Status.DONE), ("ml_sa", Status.FAILED),
                                              ("ml_sa_ia", Status.RUNNING)]):
        config = RunConfig.resolve(variant, "quick", seed=seed, dataset="synthetic", epochs=2)
        run_id = create_run(store, config)["id"]
        fields: dict = {"status": status}
        if status == Status.DONE:
            fields |= {"metrics": {"A_orig": 91.25, "A_PGD": 12.5}, "epoch": 2, "started": "2026-12-01T07:00:00.0Z",
                       "ended": "2026-12-01T07:03:05.0Z"}
        if status == Status.FAILED:
            fields |= {"error": ERROR, "tags": ["paper", "retry"]}
        change_record(store, run_id, **fields)
        ids[str(status)] = run_id
    return ids


def rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"\s*(baseline|ml_sa)", line)]


# ---- ls ------------------------------------------------------------------------------------------------
def test_ls_sorts_filters_and_shows_the_error_and_tags(tmp_path):
    ids = make_runs(tmp_path)
    out = invoke("ls", "--runs-dir", str(tmp_path))
    assert out.exit_code == 0, out.output
    assert "error/flag" in out.output and "tags" in out.output
    failed = next(line for line in rows(out.output) if ids["failed"] in line)
    assert "DataError: [bold]no such file[/]" in failed and "…" in failed  # verbatim, shortened
    assert "paper,retry" in failed

    by_seed = rows(invoke("ls", "--sort", "seed", "--runs-dir", str(tmp_path)).output)
    assert [ids["done"] in by_seed[0], ids["running"] in by_seed[2]] == [True, True]
    for args in (("--sort", "-seed"), ("--sort", "seed", "--reverse")):
        assert ids["running"] in rows(invoke("ls", *args, "--runs-dir", str(tmp_path)).output)[0]
    by_metric = rows(invoke("ls", "--sort", "-A_orig", "--runs-dir", str(tmp_path)).output)
    assert ids["done"] in by_metric[0]  # runs without the metric come last

    two = invoke("ls", "--status", "done,failed", "--runs-dir", str(tmp_path)).output
    again = invoke("ls", "--status", "done", "--status", "failed", "--runs-dir", str(tmp_path)).output
    assert len(rows(two)) == len(rows(again)) == 2 and ids["running"] not in two
    tagged = invoke("ls", "--where", "tags=paper", "--runs-dir", str(tmp_path)).output
    assert [ids["failed"] in line for line in rows(tagged)] == [True]
    untagged = invoke("ls", "--status", "done", "--runs-dir", str(tmp_path)).output
    header = next(line for line in untagged.splitlines() if line.strip().startswith("id "))
    assert "status" in header and "tags" not in header and "error/flag" not in header  # only when some run has one


@pytest.mark.parametrize("args, says", [
    (("--sort", "sed"), "did you mean 'seed'"),
    (("--status", "dne"), "did you mean 'done'"),
    (("--status", "done,runing"), "did you mean 'running'"),
    (("--where", "variant=ml"), "valid values: baseline"),
    (("--where", "tgas=x"), "did you mean 'tags'"),  # tag=x itself is the alias of tags=x
])
def test_ls_refuses_bad_options_with_a_suggestion(tmp_path, args, says):
    make_runs(tmp_path)
    out = invoke("ls", *args, "--runs-dir", str(tmp_path))
    assert out.exit_code == 2 and says in out.output, out.output


def test_ls_shows_a_quiet_phase_with_its_own_progress(tmp_path):
    ids = make_runs(tmp_path)
    progress = tmp_path / ids["running"] / "progress.json"
    progress.write_text(json.dumps({"kind": "invariance", "invariance": {"split": "train", "done": 120,
                                                                         "total": 1000}}))
    line = next(r for r in rows(invoke("ls", "--runs-dir", str(tmp_path)).output) if ids["running"] in r)
    assert "inv 120/1000" in line and "0/2" not in line
    progress.write_text(json.dumps({"kind": "eval", "eval": {"metric": "A_PGD", "done": 3, "total": 10}}))
    line = next(r for r in rows(invoke("ls", "--runs-dir", str(tmp_path)).output) if ids["running"] in r)
    assert "eval A_PGD 3/10" in line


def test_phase_progress_and_describe_read_every_phase():
    assert phase_progress({"kind": "phase", "phase": {"phase": "invariance", "split": "test"}}) == "inv test"
    assert phase_progress({"kind": "phase", "phase": {"phase": "autoattack"}}) == "AA"
    assert phase_progress({"kind": "phase", "phase": {"phase": "train"}}) is None  # the epoch says it
    assert phase_progress({"kind": "batch", "batch": {}}) is None
    assert phase_progress({"kind": "eval", "eval": {"metric": "A_SA"}}) is None  # malformed: no count
    assert phase_progress({"kind": "invariance", "invariance": {"split": "test", "done": 5, "total": 9}}) \
        == "inv test 5/9"
    running = {"status": "running"}
    assert describe(running, {"kind": "phase", "phase": {"phase": "eval"}})[0] == "evaluation"
    assert describe(running, {"kind": "phase", "phase": {"phase": "invariance", "split": "train"}})[0] \
        == "invariance train"


# ---- show ----------------------------------------------------------------------------------------------
def test_show_aligns_the_config_and_prints_the_error_once(tmp_path):
    ids = make_runs(tmp_path)
    store = Store(tmp_path)
    trace = "Traceback (most recent call last):\n  File \"x.py\", line 1, in load\ncore.data." + ERROR
    change_record(store, ids["failed"], traceback=trace)
    (tmp_path / ids["done"] / "metrics.jsonl").write_text(json.dumps(
        {"kind": "epoch", "epoch": 1, "epochs": 2, "train_loss": 2.41, "train_ce_clean": 2.344,
         "train_ce_adv": 2.359, "train_triplet_sa": 0.0654, "train_triplet_ia": 0.05043, "monitor_A_orig": 10.16,
         "monitor_A_SA": 10.16, "monitor_A_PGD": 10.16, "seconds": 0.3864}) + "\n")
    failed = invoke("show", ids["failed"], "--runs-dir", str(tmp_path), width=100).output
    assert failed.count("no such file") == 1 and 'File "x.py"' in failed
    assert "tags" in failed and "paper, retry" in failed

    done = invoke("show", ids["done"], "--runs-dir", str(tmp_path), width=80).output
    assert "duration" in done and "3m05s" in done
    keys = int(re.search(r"config \((\d+) keys", done).group(1))
    grid = done.split("config (")[1].split("epochs (monitor")[0].splitlines()[1:]
    assert keys > 40 and len(grid) < keys * 0.7  # several aligned pairs to a row, not one blob or one per line
    columns = {line.index(" 0.001 ") for line in grid if " 0.001 " in line}  # lr=0.001, lambda_norm=0.001
    assert len(columns) == 1, grid  # values aligned under each other
    assert not re.search(r"config: variant=", done)
    assert all(len(line) <= 80 for line in done.splitlines())
    header = next(line for line in done.splitlines() if re.match(r"\s*epoch\s+loss", line))
    assert all(h in header for h in ("loss", "CE adv", "T_sa", "T_ia", "A_PGD")) and "…" not in header
    table_rows = [line for line in done.splitlines() if line.strip().startswith("1 ")]
    assert table_rows and "…" not in table_rows[0]


def test_duration_reads_started_and_ended():
    assert duration({"started": "2026-12-01T07:00:00.0Z", "ended": "2026-12-01T08:02:03.0Z"}) == "1h02m"
    assert duration({"started": "2026-12-01T07:00:00.0Z", "ended": "2026-12-01T07:00:09.5Z"}) == "9s"
    assert duration({"started": None}) is None and duration({"started": "garbage", "ended": "x"}) is None


def test_finished_live_lines_show_the_duration_not_zero_clocks(tmp_path):
    ids = make_runs(tmp_path)
    console = Console(record=True, width=150, file=io.StringIO(), force_terminal=False)  # the final frame only
    with LiveRuns(console, Store(tmp_path), [ids["done"], ids["failed"]]) as live:
        live.refresh()
    text = console.export_text()
    done = next(line for line in text.splitlines() if ids["done"] in line)
    assert "0:00:00" not in text and "took 3m05s" in done and "nan" not in done, text


# ---- help ----------------------------------------------------------------------------------------------
def commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


@pytest.mark.slow
def test_every_help_summary_is_a_whole_phrase_and_usage_names_run():
    root = get_command(app)
    for path, _command in commands(root):
        parent = invoke(*path[:-1], "--help", width=100)
        assert parent.exit_code == 0, parent.output
        listing = parent.output.split("Commands:")[1]
        entry = re.search(rf"^  {re.escape(path[-1])}\s+(.*(?:\n {{6,}}\S.*)*)", listing, re.M)
        assert entry, (path, listing)
        text = " ".join(entry.group(1).split())
        assert not text.endswith("...") and text.count("(") == text.count(")"), (path, text)
        assert not text.endswith((" et al", " (", ",", ":")), (path, text)
        own = invoke(*path, "--help", width=100)
        assert own.exit_code == 0 and "{" not in own.output.splitlines()[0], own.output
    assert "Usage: amltui show [OPTIONS] RUN" in invoke("show", "--help").output
    assert "Invariance examples (Tramèr et al. 2020" in invoke("--help").output


def test_summary_keeps_abbreviations_and_cuts_at_clauses():
    assert first_sentence("Invariance examples (Tramèr et al. 2020, L∞): make. More.") == \
        "Invariance examples (Tramèr et al. 2020, L∞): make"
    assert summary("Queue runs (the cross product of --variants, --seeds and --grid) and wait for them, "
                   "showing progress.") == "Queue runs and wait for them, showing progress"
    assert summary("List the visible GPUs: --gpus position, name, UUID, memory, utilisation, other people's "
                   "processes.") == "List the visible GPUs"
    assert summary("List runs.") == "List runs"


def test_plot_pca_can_be_turned_off_and_eval_names_the_sets_folder_once(tmp_path):
    ids = make_runs(tmp_path)
    off = invoke("plot", ids["done"], "--no-pca", "--runs-dir", str(tmp_path))
    assert off.exit_code == 2 and "nothing to plot" in off.output
    help_text = invoke("eval", "--help").output
    assert "--human-sets-dir" in help_text and "--from-dir" not in help_text
    old = invoke("eval", "nosuchrun", "--human-sets", "--from-dir", str(tmp_path), "--runs-dir", str(tmp_path))
    assert old.exit_code == 2 and "No such option" not in old.output and "nosuchrun" in old.output


@pytest.mark.slow
def test_invariance_show_writes_the_documented_default(tmp_path):
    help_text = " ".join(invoke("invariance", "show", "--help").output.split())
    assert "<runs-dir>/invariance-<dataset>-<split>.png" in help_text
    out = invoke("invariance", "show", "--dataset", "synthetic", "--train-subset", "60", "--test-subset", "10",
                 "-n", "2", "--runs-dir", str(tmp_path))
    assert out.exit_code == 0, out.output
    assert (tmp_path / "invariance-synthetic-test.png").is_file()


def test_runs_dir_before_the_command(tmp_path):
    ids = make_runs(tmp_path)
    before = invoke("--runs-dir", str(tmp_path), "ls")
    assert before.exit_code == 0 and ids["done"] in before.output
    shown = invoke("--runs-dir", str(tmp_path), "show", ids["done"])
    assert shown.exit_code == 0 and ids["done"] in shown.output
    other = tmp_path / "other"
    other.mkdir()
    after_wins = invoke("--runs-dir", str(tmp_path), "ls", "--runs-dir", str(other))
    assert after_wins.exit_code == 0 and ids["done"] not in after_wins.output and "no runs" in after_wins.output


def test_a_typo_in_the_runs_folder_is_refused_and_not_created(tmp_path):
    typo = tmp_path / "typo"
    for args, env in ((("ls",), {"AMLTUI_RUNS_DIR": str(typo)}), (("export", "--runs-dir", str(typo)), {}),
                      (("show", "x", "--runs-dir", str(typo)), {})):
        out = invoke(*args, env=env)
        assert out.exit_code == 2 and "does not exist" in out.output, out.output
        assert not typo.exists()


def test_an_unknown_set_key_gets_did_you_mean(tmp_path):
    out = invoke("run", "--set", "lrr=1", "--dataset", "synthetic", "--detach", "--runs-dir", str(tmp_path))
    assert out.exit_code == 2 and "did you mean 'lr'" in out.output and "config-keys" in out.output
    assert len(out.output.splitlines()) <= 3  # not every key dumped
    keys = invoke("config-keys").output
    assert "default: paper=" in keys and "seed of the initial weights" in keys  # descriptions and defaults kept
