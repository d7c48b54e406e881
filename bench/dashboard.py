"""Dashboard benchmark: 200 runs in the store, 8 of them live (a separate process rewrites their progress files
and store records every 0.5 s).

Figures:
  * latency: time from a live run's progress write to the runs table holding the new value;
  * refresh cycle: time of one background read (store + progress files → rows) and of applying it to the table;
  * CPU of the dashboard process, idle (nothing changes) and live, in % of one core:
    in-process with Pilot (headless, time.process_time) and, with --tmux, the real app in tmux 80×24
    (utime+stime from /proc/<pid>/stat);
  * with --rss: the resident memory (VmRSS, VmHWM from /proc/<pid>/status) of the real app in tmux 80×24, idle
    on the demo runs folder (amltui/tui/demo.py), and with --against REV the same for the tree of git revision
    REV (exported with git archive), measured in the same run: the before/after of a change;
  * with --rss --pca: the same after `p` computed a real run's PCA figure (a tiny run trained first, in a
    process of its own): what torch work leaves in the dashboard.

    .venv/bin/python bench/dashboard.py [--seconds 20] [--tmux]
    .venv/bin/python bench/dashboard.py --rss [--pca] [--against REV] [--settle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amltui.app.fsutil import atomic_write_json
from amltui.app.runs.store import Store, update_record
from amltui.tui.dashboard import DashboardApp
from amltui.tui.demo import seed_demo
from amltui.tui.screens.runs import RunsScreen
from amltui.tui.widgets.runs_table import RunsTable

N_RUNS, N_LIVE, PERIOD = 200, 8, 0.5


def make_store(root: Path) -> list[str]:
    """200 demo runs; 8 of them turned into live ones (running, on a host the liveness check leaves alone)."""
    records = seed_demo(root, extra=N_RUNS - 7)
    store = Store(root)
    live = [r["id"] for r in records if r["status"] == "done"][:N_LIVE]
    for run_id in live:
        update_record(store, run_id, lambda r: r.update(status="running", epoch=0, metrics={}, metrics_n={}, last={},
                                                        host="bench-host", pid=1))
    return live


def updater(root: Path, live: list[str], stamps: mp.Queue, stop: mp.Event) -> None:
    """Every PERIOD: each live run gets a new progress.json (batch loss = 1 + seq/1000) and a store update."""
    store = Store(root)
    seq = 0
    while not stop.is_set():
        seq += 1
        loss = 1 + seq / 1000
        for i, run_id in enumerate(live):
            atomic_write_json(root / run_id / "progress.json", {"kind": "batch", "batch": {
                "epoch": 1 + seq // 20, "epochs": 50, "step": seq % 20, "steps": 20, "loss": loss}})
            if i == 0:
                stamps.put((f"{loss:.4f}", time.monotonic()))
            fields = {"epoch": seq // 20, "last": {"train_loss": loss, "monitor_A_orig": 50 + seq % 50}}
            update_record(store, run_id, lambda r, fields=fields: r.update(fields))
        stop.wait(PERIOD)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(name: str, values: list[float], unit: str = "ms", scale: float = 1000) -> str:
    if not values:
        return f"{name}: no samples"
    v = [x * scale for x in values]
    return (f"{name}: median {statistics.median(v):.1f} {unit}, p90 {pct(v, 0.9):.1f}, max {max(v):.1f} "
            f"(n={len(v)})")


async def pilot_bench(root: Path, live: list[str], seconds: float) -> None:
    app = DashboardApp(root)
    reads: list[float] = []
    applies: list[float] = []
    shown: dict[str, float] = {}

    async with app.run_test(size=(80, 24)) as pilot:
        while not isinstance(app.screen, RunsScreen) or not app.screen.loaded:
            await pilot.pause(0.05)
        screen = app.screen
        table = screen.query_one(RunsTable)
        reader_poll, table_show = app.reader.poll, table.show

        def timed_poll(force: bool = False):  # runs in the worker thread
            t = time.perf_counter()
            out = reader_poll(force)
            if out is not None:
                reads.append(time.perf_counter() - t)
            return out

        def timed_show(rows):
            t = time.perf_counter()
            table_show(rows)
            applies.append(time.perf_counter() - t)
            value = str(table.get_cell(live[0], "loss"))
            shown.setdefault(value, time.monotonic())

        app.reader.poll, table.show = timed_poll, timed_show
        await pilot.pause(2)

        # idle: nothing changes on disk
        reads.clear()
        applies.clear()
        t0, c0 = time.monotonic(), time.process_time()
        await pilot.pause(seconds / 2)
        idle_cpu = (time.process_time() - c0) / (time.monotonic() - t0)
        idle_reads = len(reads)

        # live: 8 runs updated every 0.5 s by another process
        stamps: mp.Queue = mp.Queue()
        stop = mp.Event()
        proc = mp.Process(target=updater, args=(root, live, stamps, stop), daemon=True)
        proc.start()
        await pilot.pause(1.0)
        reads.clear()
        applies.clear()
        written_before = table.cells_written
        t0, c0 = time.monotonic(), time.process_time()
        await pilot.pause(seconds)
        live_cpu = (time.process_time() - c0) / (time.monotonic() - t0)
        cells = table.cells_written - written_before
        stop.set()
        proc.join(5)
        written: dict[str, float] = {}
        while not stamps.empty():
            value, at = stamps.get()
            written.setdefault(value, at)
        latencies = [shown[v] - t for v, t in written.items() if v in shown and shown[v] >= t]
        missed = sum(v not in shown for v in written)

    print(f"Pilot (headless, in-process), {N_RUNS} runs, {N_LIVE} live, poll every {app.poll_interval} s:")
    print("  " + summary("latency write → table", latencies) + f"; {missed} of {len(written)} values "
          "overwritten before a poll saw them")
    print("  " + summary("refresh cycle, background read (live)", reads))
    print("  " + summary("refresh cycle, table update on the UI thread (live)", applies))
    print(f"  cells rewritten per applied refresh (live): {cells / max(len(applies), 1):.1f} of "
          f"{N_RUNS * len(table.columns)}")
    print(f"  CPU idle: {100 * idle_cpu:.1f} % of a core ({idle_reads} full reads in {seconds / 2:.0f} s); "
          f"CPU live: {100 * live_cpu:.1f} % of a core")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tmux_bench(root: Path, live: list[str], seconds: float) -> None:
    socket = f"amltui-bench-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=True).stdout

    tmux("new-session", "-d", "-s", "b", "-x", "80", "-y", "24",
         f"exec {sys.executable} -m amltui.tui --runs-dir {root}")
    try:
        pid = int(tmux("display-message", "-p", "-t", "b", "#{pane_pid}").strip())
        deadline = time.monotonic() + 60
        while "200 runs" not in tmux("capture-pane", "-p", "-t", "b") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4)  # warm-up imports done
        c0, t0 = proc_cpu(pid), time.monotonic()
        time.sleep(seconds / 2)
        idle = (proc_cpu(pid) - c0) / (time.monotonic() - t0)
        stamps: mp.Queue = mp.Queue()
        stop = mp.Event()
        proc = mp.Process(target=updater, args=(root, live, stamps, stop), daemon=True)
        proc.start()
        time.sleep(1)
        c0, t0 = proc_cpu(pid), time.monotonic()
        time.sleep(seconds)
        busy = (proc_cpu(pid) - c0) / (time.monotonic() - t0)
        stop.set()
        proc.join(5)
        screen = tmux("capture-pane", "-p", "-t", "b")
        print(f"tmux 80×24 (real terminal driver), pid {pid}:")
        print(f"  CPU idle: {100 * idle:.1f} % of a core; CPU live: {100 * busy:.1f} % of a core")
        print("  screen at the end: " + screen.splitlines()[0].strip())
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def idle_rss(source: Path, runs: Path, settle: float, shown: str = "7 runs", pca: bool = False) -> dict[str, int]:
    """Start ``python -m amltui.tui`` from ``source`` in tmux 80×24 on ``runs``; once it has drawn the runs
    (``shown`` on screen) and sat idle for ``settle`` seconds (every start-up worker done), its VmRSS/VmHWM in KiB.
    ``pca``: first open the first run and press p, and wait for the figure (and then ``settle`` seconds)."""
    socket = f"amltui-rss-{os.getpid()}-{time.monotonic_ns()}"  # a fresh server: the last one may still be ending

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=True).stdout

    def wait_for(text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while text not in tmux("capture-pane", "-p", "-t", "b"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the dashboard did not show {text!r} within {seconds:.0f} s:\n"
                                 + tmux("capture-pane", "-p", "-t", "b"))
            time.sleep(0.2)

    tmux("new-session", "-d", "-s", "b", "-x", "80", "-y", "24", "-c", str(source),
         f"exec env PYTHONPATH={source} {sys.executable} -m amltui.tui --runs-dir {runs}")
    try:
        pid = int(tmux("display-message", "-p", "-t", "b", "#{pane_pid}").strip())
        wait_for(shown, 120)
        if pca:
            tmux("send-keys", "-t", "b", "Enter")
            wait_for("Robustness", 60)  # the detail screen's last tab
            tmux("send-keys", "-t", "b", "p")
            wait_for("PC1", 900)  # the figure's last line: drawn
        time.sleep(settle)
        return vm_status(pid)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def train_tiny_run(runs: Path) -> str:
    """One finished run with a checkpoint (synthetic data, small net, 1 epoch), trained in a child process so
    that this benchmark's own process never loads torch either. Its id."""
    code = ("import sys; from pathlib import Path; from amltui.app.runs.folders import create_run; "
            "from amltui.app.science.execution import execute; "
            "from amltui.app.runs.store import Store; from core.config import RunConfig; "
            "store = Store(Path(sys.argv[1])); config = RunConfig.resolve('ml_sa', 'quick', dataset='synthetic', "
            "arch='small', epochs=1, train_subset=256, test_subset=128, batch_size=64, eval_batch_size=128, "
            "pgd_steps=3, threads=1, eval_ia=False, device='cpu'); run_id = create_run(store, config)['id']; "
            "execute(store, run_id); print(run_id)")
    done = subprocess.run([sys.executable, "-c", code, str(runs)], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def rss_bench(against: str | None, settle: float, pca: bool = False) -> None:
    here = Path(__file__).resolve().parent.parent
    root = Path(tempfile.mkdtemp(prefix="amltui-rss-"))
    try:
        if pca:
            print(f"trained {train_tiny_run(root / 'runs')} (synthetic, arch small, 1 epoch; 128 test images)")
        else:
            seed_demo(root / "runs")
        trees = [("this tree", here)]
        if against:
            old = root / "against"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(here), "archive", against], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
            trees.insert(0, (f"{against}", old))
        if pca:
            print(f"dashboard RSS, tmux 80×24, after p drew the run's PCA figure, read {settle:.0f} s later:")
        else:
            print(f"dashboard idle RSS, tmux 80×24, demo runs folder (7 runs), read {settle:.0f} s after the first "
                  "draw:")
        figures = {}
        for name, source in trees:
            vm = figures[name] = idle_rss(source, root / "runs", settle, "1 runs" if pca else "7 runs", pca)
            print(f"  {name:>12}: VmRSS {vm['VmRSS'] / 1024:.0f} MiB, peak (VmHWM) {vm['VmHWM'] / 1024:.0f} MiB")
        if against:
            before, after = figures[against]["VmRSS"], figures["this tree"]["VmRSS"]
            print(f"  ratio {against} / this tree: {before / after:.2f}×")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the live window")
    parser.add_argument("--tmux", action="store_true", help="also measure the real app in tmux")
    parser.add_argument("--rss", action="store_true", help="only the idle memory of the real app (tmux)")
    parser.add_argument("--pca", action="store_true", help="with --rss: measure after p computed a PCA figure")
    parser.add_argument("--against", metavar="REV", help="with --rss: also measure git revision REV's tree")
    parser.add_argument("--settle", type=float, default=10.0, help="with --rss: idle seconds before reading")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), Python "
          f"{sys.version.split()[0]}")
    if args.rss:
        rss_bench(args.against, args.settle, args.pca)
        return
    root = Path(tempfile.mkdtemp(prefix="amltui-bench-"))
    try:
        live = make_store(root / "runs")
        size = (root / "runs" / "store.json").stat().st_size
        print(f"store: {N_RUNS} runs, {size / 1024:.0f} KiB; live runs: {', '.join(live[:2])}, …")
        asyncio.run(pilot_bench(root / "runs", live, args.seconds))
        if args.tmux:
            tmux_bench(root / "runs", live, args.seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
