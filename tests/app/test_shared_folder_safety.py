"""A shared runs folder that cannot be turned against its users (issue 23, reproductions 1, 2, 3, 7 and 12).

Someone who can write the runs folder plants symbolic links where amltui writes, pids of strangers in records,
packages in the folder a run starts from, and races commands against each other: none of it may reach a file
outside the folder, a process that is not a worker of ours, or delete what a refused command should keep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from amltui.app.errors import UserError
from amltui.app.executors.local import slot_lock, spawn_worker
from amltui.app.executors.slots import Slot
from amltui.app.fsutil import (
    FileLock,
    UnsafePath,
    atomic_write_json,
    check_output_path,
    open_append,
    touch,
)
from amltui.app.results.png_figures import save_png
from amltui.app.runs.folders import run_dir
from amltui.app.runs.owners import SchedulerClaim, process_start, worker_proof
from amltui.app.runs.store import Store, delete_record
from amltui.app.science.worker import ProgressWriter, _heartbeat
from core.attacks.invariance_cache import ChunkedCache
from tests.helpers import ROOT, assert_clean, edit_record, invoke, make_runs

PRECIOUS = "precious\n"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    make_runs(folder, seeds=(0,))
    return folder


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_text(PRECIOUS)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path


def plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def untouched(victim: Path) -> bool:
    return victim.read_text() == PRECIOUS and victim.stat().st_mtime == 1_000_000_000


# ---- reproduction 1: no write or lock follows a planted link out of the runs folder ---------------------
CASES = [
    ("store.json.lock", ["tag", "b0", "x"]),
    ("b0/.lock", ["tag", "b0", "x"]),
    ("b0/.lock", ["note", "b0", "hello"]),
    ("b0/worker.lock", ["resume", "b0", "--detach", "--gpus", "none"]),
    ("b0/log.txt", ["resume", "b0", "--detach", "--gpus", "none"]),
    (".slots/cpu0.lock", ["run", "--dataset", "synthetic", "--preset", "quick", "--epochs", "1", "--detach",
                          "--gpus", "none"]),
    ("scheduler.log", ["run", "--dataset", "synthetic", "--preset", "quick", "--epochs", "1", "--detach",
                       "--gpus", "none"]),
    ("b0/pca.png", ["plot", "b0"]),
    ("b0/curve.png", ["plot", "b0", "--curve"]),
    ("b0/curve.png", ["eval", "b0", "--curve"]),
    ("b0/metrics.jsonl", ["eval", "b0"]),
    ("b0/progress.json", ["tag", "b0", "x"]),
    ("b0/heartbeat", ["note", "b0", "hello"]),
    ("b0/checkpoint.pt", ["eval", "b0"]),
    ("b0/run.json", ["tag", "b0", "x"]),
    ("b0/config.json", ["resume", "b0", "--detach", "--gpus", "none"]),
]


@pytest.mark.parametrize("planted, command", CASES, ids=[f"{p}-{c[0]}" for p, c in CASES])
def test_a_planted_link_is_refused_and_its_target_untouched(runs: Path, victim: Path, planted: str,
                                                           command: list[str]) -> None:
    if command[0] == "resume":
        edit_record(Store(runs), "b0", status="failed", error="for the test")
    plant(runs / planted, victim)
    result = invoke(*command, "--runs-dir", runs)
    out = assert_clean(result, 2)
    assert Path(planted).name in out and "symbolic link" in out, out
    assert untouched(victim)
    assert (runs / planted).is_symlink()  # refused, not "repaired" behind the user's back


@pytest.mark.parametrize("command", [["tag", "b0", "x"], ["note", "b0", "hello"], ["plot", "b0"],
                                     ["eval", "b0"], ["rm", "b0", "--yes"]])
def test_a_symlinked_run_folder_is_refused_by_every_command(runs: Path, tmp_path: Path, command: list[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.move(runs / "b0", elsewhere)
    (runs / "b0").symlink_to(elsewhere)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    out = assert_clean(invoke(*command, "--runs-dir", runs), 2)
    assert "symbolic link" in out, out
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before


# The up-front checks above keep commands from starting; the writes themselves refuse a link too, so a link
# planted while a command or a worker runs (after the check) is never followed either.
def test_every_writer_refuses_a_link_planted_after_the_checks(runs: Path, victim: Path, tmp_path: Path) -> None:
    rd = run_dir(runs, "b0")
    writers = {
        ".lock": lambda p: FileLock(p, timeout=0).acquire(),
        "metrics.jsonl": lambda p: rd.append_metrics({"epoch": 9}),
        "log.txt": lambda p: rd.log("hello"),
        "worker.out": lambda p: spawn_worker("b0", Slot("cpu0"), runs),
        "heartbeat": touch,
        "run.json": lambda p: atomic_write_json(p, {"id": "b0"}),
        "pca.png": lambda p: save_png(_figure(), p, dpi=20),
        "x.txt": lambda p: open_append(p),
    }
    for name, write in writers.items():
        plant(rd.path / name, victim)
        with pytest.raises(UnsafePath, match=name.replace(".", r"\.")):
            write(rd.path / name)
        assert untouched(victim), name
    plant(runs / "store.json.lock", victim)
    with pytest.raises(UnsafePath, match="store.json.lock"):
        delete_record(Store(runs), "b0")  # any index write takes the lock first
    assert untouched(victim)


def test_the_worker_side_writers_never_follow_a_link(runs: Path, victim: Path) -> None:
    rd = run_dir(runs, "b0")
    plant(rd.path / "progress.json", victim)
    ProgressWriter(rd.path / "progress.json")("epoch", {"epoch": 1})  # swallowed: progress is best effort
    plant(rd.path / "heartbeat", victim)
    stop = threading.Event()
    stop.set()  # one beat, then return
    _heartbeat(rd.path / "heartbeat", stop)
    assert untouched(victim)


def test_symlinked_lock_and_cache_folders_are_refused(runs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-folder"
    outside.mkdir()
    for name in (".slots", ".schedulers", "cache"):
        plant(runs / name, outside)
    with pytest.raises(UnsafePath, match=r"\.slots"):
        slot_lock(runs, Slot("cpu0"))
    with pytest.raises(UnsafePath, match=r"\.schedulers"):
        SchedulerClaim.create(runs, ["b0"])
    cache = ChunkedCache(runs / "cache" / "invariance", {"k": 1}, total=4, chunk_size=2)
    with pytest.raises(UnsafePath, match="cache"):
        cache.load_or_build(lambda start, end: {})
    assert list(outside.iterdir()) == []
    out = assert_clean(invoke("ls", "--runs-dir", runs), 2)
    assert "symbolic link" in out


def test_a_fifo_where_a_lock_goes_is_refused_without_blocking(runs: Path) -> None:
    fifo = runs / "b0" / "worker.lock"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePath, match="not a regular file"):
        FileLock(fifo, timeout=0).acquire()


def _figure():
    from amltui.app.results.png_figures import plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    return fig


# ---- reproduction 2: cancel signals only a proven worker of the run ------------------------------------
@pytest.mark.slow
def test_cancel_never_signals_a_strangers_pid(runs: Path) -> None:
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        store = Store(runs)
        edit_record(store, "b0", status="running", executor="local", pid=stranger.pid,
                    host=os.uname().nodename, pid_start=process_start(stranger.pid))  # even a matching start time
        (runs / "b0" / "heartbeat").unlink(missing_ok=True)
        assert_clean(invoke("store", "rebuild", "--runs-dir", runs), 0)
        out = assert_clean(invoke("cancel", "b0", "--runs-dir", runs), 0)
        assert f"did not signal pid {stranger.pid}" in out and "worker.lock" in out, out
        assert stranger.poll() is None  # alive: nothing was sent to it
        record = store.get("b0")
        assert record["status"] == "cancelled" and "worker not found" in record["error"], record
        assert "did not signal" in (runs / "b0" / "log.txt").read_text()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.slow
def test_worker_proof_is_the_lock_or_the_recorded_start(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    run.mkdir()
    me = os.getpid()
    assert worker_proof(run, me, process_start(me)) is None  # "r1" is not among this process's arguments
    with FileLock(run / "worker.lock"):
        assert worker_proof(run, me, None) == "it holds worker.lock"
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "r1"], stdin=subprocess.PIPE)
    try:
        assert worker_proof(run, child.pid, process_start(child.pid))
        assert worker_proof(run, child.pid, process_start(child.pid) + 1) is None  # a reused pid
        assert worker_proof(run, child.pid, None) is None
    finally:
        child.communicate(b"")


# ---- reproduction 3: workers never import from the current folder ---------------------------------------
@pytest.mark.slow
def test_a_run_started_from_a_folder_with_hostile_packages_runs_our_code(tmp_path: Path) -> None:
    hostile = tmp_path / "x"
    pwned = tmp_path / "PWNED"
    for package in ("amltui", "core"):
        (hostile / package).mkdir(parents=True)
        (hostile / package / "__init__.py").write_text(f"open({str(pwned)!r}, 'a').write({package!r})\n")
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMLTUI_RUNS_DIR")}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "amltui"), "run", "--dataset", "synthetic", "--preset",
                           "quick", "--epochs", "1", "--set", "train_subset=128", "--set", "test_subset=64",
                           "--id", "hostile", "--gpus", "none", "--runs-dir", str(runs)],
                          cwd=hostile, env=env, capture_output=True, text=True, timeout=600)
    assert not pwned.exists(), pwned.read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Store(runs).get("hostile")["status"] == "done"


# ---- reproduction 7: --out never overwrites amltui's files ------------------------------------------------
@pytest.mark.parametrize("target", ["b0/checkpoint.pt", "b0/run.json", "b0/config.json", "store.json",
                                    "store.json.lock", ".slots/cpu0.lock", "b0/new.md"])
def test_export_out_refuses_amltuis_files(runs: Path, target: str) -> None:
    path = runs / target
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        path.write_bytes(b"amltui's own\n")
    before = path.read_bytes()
    out = assert_clean(invoke("export", "--out", path, "--runs-dir", runs), 2)
    assert "would overwrite" in out, out
    assert path.read_bytes() == before


def test_plot_out_refuses_the_index_before_computing(runs: Path) -> None:
    before = (runs / "store.json").read_bytes()
    out = assert_clean(invoke("plot", "b0", "--out", runs / "store.json", "--runs-dir", runs), 2)
    assert "would overwrite" in out and "store.json" in out, out
    assert (runs / "store.json").read_bytes() == before


def test_out_through_a_link_into_a_run_folder_is_refused(runs: Path, tmp_path: Path) -> None:
    link = tmp_path / "innocent.md"
    link.symlink_to(runs / "b0" / "run.json")
    before = (runs / "b0" / "run.json").read_bytes()
    assert "would overwrite" in assert_clean(invoke("export", "--out", link, "--runs-dir", runs), 2)
    assert (runs / "b0" / "run.json").read_bytes() == before


def test_out_makes_folders_only_here_or_when_asked(runs: Path, tmp_path: Path, monkeypatch) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    far = tmp_path / "far" / "deep" / "t.md"
    out = assert_clean(invoke("export", "--out", far, "--runs-dir", runs), 2)
    assert "does not exist" in out and "--mkdir" in out, out
    assert not (tmp_path / "far").exists()
    assert_clean(invoke("export", "--out", far, "--mkdir", "--runs-dir", runs), 0)
    assert far.is_file()
    assert_clean(invoke("export", "--out", "sub/t.md", "--runs-dir", runs), 0)  # inside the current folder
    assert (here / "sub" / "t.md").is_file()
    assert_clean(invoke("export", "--out", runs / "reports" / "t.md", "--mkdir", "--runs-dir", runs), 0)


def test_check_output_path_names_what_it_protects(runs: Path) -> None:
    with pytest.raises(UserError, match="a file of run b0"):
        check_output_path(runs / "b0" / "x.png", runs)
    with pytest.raises(UserError, match="internals"):
        check_output_path(runs / "cache" / "x.png", runs)
    assert check_output_path(runs / "results.md", runs) == runs / "results.md"


# ---- reproduction 12: concurrency tells the truth ---------------------------------------------------------
RACER = """
import sys
from amltui.cli import app
print("ready", flush=True)
sys.stdin.read(1)  # the barrier: every racer is loaded and waits here
app(sys.argv[1:], prog_name="amltui")
"""
RESUMER = """
import sys
from amltui.app.service.manage import find_run, open_store, resume_run
store = open_store(sys.argv[1])
record = find_run(store, "b0")
print("ready", flush=True)
sys.stdin.read(1)
try:
    print("queued", resume_run(store, record), flush=True)
except Exception as exc:  # noqa: BLE001 (any clean refusal; a traceback would fail the test)
    print(f"refused: {type(exc).__name__}: {exc}", flush=True)
"""


def race(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start every command, wait until each is loaded, then release them all at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    procs = [subprocess.Popen([sys.executable, "-P", *c], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for c in commands]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("g")
        p.stdin.flush()
    results = []
    for c, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return results


@pytest.mark.slow
def test_of_four_concurrent_rms_exactly_one_removes(runs: Path) -> None:
    results = race([["-c", RACER, "rm", "b0", "--yes", "--runs-dir", str(runs)]] * 4)
    for r in results:
        assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [(r.returncode, r.stdout, r.stderr) for r in results]
    assert "removed b0" in winners[0].stdout
    for r in results:
        if r.returncode != 0:
            assert "already gone" in r.stderr or "no run 'b0'" in r.stderr, r.stderr
    assert not (runs / "b0").exists() and Store(runs).get("b0") is None
    assert [p.name for p in runs.iterdir() if p.name.startswith(".deleted-")] == []


REMOVER = """
import sys
from amltui.app.service.manage import check_deletable, delete_run, find_run, open_store
store = open_store(sys.argv[1])
record = find_run(store, "b0")
check_deletable(store, [record])  # as `rm` does before asking: the run is failed, so deletable until now
print("ready", flush=True)
sys.stdin.read(1)
try:
    print("removed", delete_run(store, record), flush=True)
except Exception as exc:  # noqa: BLE001 (any clean refusal; a traceback would fail the test)
    print(f"refused: {type(exc).__name__}: {exc}", flush=True)
"""


def failed_run_with_files(runs: Path) -> None:
    edit_record(Store(runs), "b0", status="failed", error="for the test")
    for name in ("checkpoint.pt", "metrics.jsonl"):
        (runs / "b0" / name).write_bytes(b"kept\n")


def intact(runs: Path) -> bool:
    return all((runs / "b0" / n).is_file() for n in ("run.json", "config.json", "checkpoint.pt", "metrics.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(4))
def test_rm_and_resume_of_one_run_exclude_each_other(runs: Path, round_: int) -> None:
    # Both have checked the run (failed: resumable and deletable) before the barrier; then they race for its lock.
    failed_run_with_files(runs)
    rm, resume = race([["-c", REMOVER, str(runs)], ["-c", RESUMER, str(runs)]])
    for r in (rm, resume):
        assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    queued, removed = "queued b0" in resume.stdout, rm.stdout.startswith("removed")
    assert queued != removed, (rm.stdout, resume.stdout)  # exactly one of them happened
    if queued:  # the refused rm deleted nothing
        assert "nothing was deleted" in rm.stdout, rm.stdout
        assert intact(runs) and json.loads((runs / "b0" / "run.json").read_text())["status"] == "queued"
    else:
        assert not (runs / "b0").exists() and "refused" in resume.stdout


def test_an_rm_that_finds_the_run_resumed_meanwhile_deletes_nothing(runs: Path) -> None:
    from amltui.app.service.manage import check_deletable, delete_run, find_run, resume_run

    failed_run_with_files(runs)
    store = Store(runs)
    record = find_run(store, "b0")
    check_deletable(store, [record])  # rm has checked: failed, deletable
    resume_run(store, find_run(store, "b0"))  # then a resume queues it again
    with pytest.raises(UserError, match="nothing was deleted"):
        delete_run(store, record)
    assert intact(runs) and store.get("b0")["status"] == "queued"
    assert [p.name for p in runs.iterdir() if p.name.startswith(".deleted-")] == []


@pytest.mark.slow
def test_cli_rm_against_resume_never_tracebacks_or_half_deletes(runs: Path) -> None:
    failed_run_with_files(runs)
    rm, resume = race([["-c", RACER, "rm", "b0", "--yes", "--runs-dir", str(runs)], ["-c", RESUMER, str(runs)]])
    assert "Traceback" not in rm.stdout + rm.stderr + resume.stdout + resume.stderr
    assert ("queued b0" in resume.stdout) != (rm.returncode == 0)
    assert intact(runs) or not (runs / "b0").exists()


def test_the_dashboards_export_never_writes_through_a_dangling_link(runs: Path, tmp_path: Path) -> None:
    import datetime as dt

    from amltui.app.service.export import export_results

    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    target = tmp_path / "outside" / "created-through-the-link.md"
    (runs / "results-20260102-030405.md").symlink_to(target)  # dangling: exists() is False for it
    path = export_results(Store(runs), when)
    assert path.name == "results-20260102-030405-1.md" and path.is_file()
    assert not target.exists()
