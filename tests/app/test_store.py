"""Tests of amltui.app.runs.store and amltui.app.fsutil: a real TinyDB file, real processes (no threads faking it)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from amltui.app.fsutil import FileLock, atomic_write_bytes, atomic_write_json, read_json
from amltui.app.runs.store import (
    SCHEMA_VERSION,
    STORE_FILENAME,
    Store,
    StoreCorruptError,
    StoreError,
    StoreSchemaError,
    create_records,
    delete_record,
    mark_folderless,
    validate_run_id,
)
from tests.helpers import ROOT, wait_until

WORKER = ROOT / "tests" / "store_worker.py"


def spawn(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_and_collect(p: subprocess.Popen[str]) -> str:
    """SIGKILL ``p`` and return the rest of its output (read through the same buffered pipe as readline)."""
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.stdout is not None and p.returncode == -signal.SIGKILL
    rest = p.stdout.read()
    p.stdout.close()
    return rest


def ids(store: Store) -> set[str]:
    return {r["id"] for r in store.all()}


def write_run_folder(runs: Path, record: dict) -> None:
    folder = runs / record["id"]
    folder.mkdir()
    atomic_write_json(folder / "run.json", record)


# -- basic behaviour ------------------------------------------------------------------------------------


def test_add_get_put_update_remove_find_all(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    assert store.path == tmp_path / "runs" / STORE_FILENAME and store.runs_dir.is_dir()
    assert store.all() == [] and store.get("a") is None  # no file yet = empty

    store._add({"id": "b", "status": "queued", "created": "2025-01-02T00:00:00"})
    store._add({"id": "a", "status": "queued", "created": "2025-01-02T00:00:00"})
    store._add({"id": "c", "status": "done", "created": "2025-01-01T00:00:00"})
    store._add({"id": "d"})  # no "created": sorted last
    assert [r["id"] for r in store.all()] == ["c", "a", "b", "d"]
    assert store.get("a") == {"id": "a", "status": "queued", "created": "2025-01-02T00:00:00"}

    new = store._update("a", {"status": "running", "epoch": 1})
    assert new == store.get("a") and new["status"] == "running" and new["epoch"] == 1
    new = store._update("a", lambda r: {**r, "epoch": r["epoch"] + 1})
    assert store.get("a")["epoch"] == 2 == new["epoch"]

    store._put({"id": "a", "status": "done"})  # put replaces the whole record
    assert store.get("a") == {"id": "a", "status": "done"}
    store._put({"id": "e", "status": "queued"})  # and inserts when absent
    assert store.get("e") == {"id": "e", "status": "queued"}

    assert [r["id"] for r in store.find(status="done")] == ["c", "a"]
    assert store.find(status="done", id="a") == [{"id": "a", "status": "done"}]
    assert store.find(status="nope") == []

    assert store._remove("b") is True
    assert store._remove("b") is False
    assert ids(store) == {"a", "c", "d", "e"}

    got = store.get("c")
    got["status"] = "mutated by caller"
    assert store.get("c")["status"] == "done"  # callers get copies


def test_records_persist_across_store_objects_and_schema_recorded(tmp_path: Path) -> None:
    Store(tmp_path)._add({"id": "r1", "x": [1, 2.5, None, {"y": True}]})
    assert Store(tmp_path).get("r1") == {"id": "r1", "x": [1, 2.5, None, {"y": True}]}
    assert Store(tmp_path).schema_version() == SCHEMA_VERSION == 1
    raw = json.loads((tmp_path / STORE_FILENAME).read_text())
    assert list(raw["meta"].values()) == [{"schema_version": SCHEMA_VERSION}]
    assert [d["id"] for d in raw["runs"].values()] == ["r1"]


def test_sorting_numbers_before_strings(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for rid, created in [("z", 10.0), ("y", 9), ("x", "2025"), ("w", None)]:
        store._add({"id": rid, "created": created})
    assert [r["id"] for r in store.all()] == ["y", "z", "x", "w"]


def test_the_named_writers_create_delete_and_mark_only_a_folderless_record(tmp_path: Path) -> None:
    store = Store(tmp_path)
    (tmp_path / "has-folder").mkdir()
    create_records(store, [{"id": "has-folder", "status": "queued"}, {"id": "gone", "status": "running"}])
    with pytest.raises(StoreError, match="'gone' is already in"):
        create_records(store, [{"id": "new", "status": "queued"}, {"id": "gone", "status": "queued"}])
    assert store.get("new") is None  # all or nothing
    assert mark_folderless(store, "gone", {"status": "cancelled"})["status"] == "cancelled"
    with pytest.raises(ValueError, match="update_record"):  # a run with a folder changes with its run.json
        mark_folderless(store, "has-folder", {"status": "cancelled"})
    assert store.get("has-folder")["status"] == "queued"
    assert delete_record(store, "gone") is True
    assert delete_record(store, "gone") is False
    assert [r["id"] for r in store.all()] == ["has-folder"]


def test_duplicate_and_unknown_ids(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store._add({"id": "r1", "v": 1})
    with pytest.raises(StoreError, match="'r1' is already in .*a new run needs a new id"):
        store._add({"id": "r1", "v": 2})
    assert store.get("r1") == {"id": "r1", "v": 1}
    with pytest.raises(StoreError, match="no run 'ghost'"):
        store._update("ghost", {"v": 3})
    assert ids(store) == {"r1"}


@pytest.mark.parametrize("bad", ["../x", "", "a/b", ".", "..", "x" * 200, "-lead", "sp ace", "é"])
def test_invalid_run_ids_rejected(tmp_path: Path, bad: str) -> None:
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="1-128 characters"):
        validate_run_id(bad)
    with pytest.raises(ValueError, match="invalid run id"):
        store._add({"id": bad})
    with pytest.raises(ValueError):
        store.get(bad)
    assert not (tmp_path / STORE_FILENAME).exists()  # nothing was written


def test_valid_run_ids_accepted() -> None:
    for good in ["a", "0", "run-1.seed_2", "A" * 128]:
        assert validate_run_id(good) == good


def test_bad_records_and_updates_change_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store._add({"id": "r1", "v": 1})
    before = store.path.read_bytes()
    with pytest.raises(TypeError, match="must be a dict"):
        store._add(["id", "r2"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an 'id'"):
        store._add({"v": 1})
    with pytest.raises(ValueError, match="not plain JSON"):
        store._add({"id": "r2", "when": object()})
    with pytest.raises(ValueError, match="not plain JSON"):
        store._update("r1", {"when": object()})
    with pytest.raises(ValueError, match="may not change a run's id"):
        store._update("r1", {"id": "r9"})
    with pytest.raises(TypeError, match="returned list"):
        store._update("r1", lambda r: [r])

    def boom(record: dict) -> dict:
        record["v"] = 99  # mutating the copy must not leak into the store
        raise RuntimeError("user function failed")

    with pytest.raises(RuntimeError, match="user function failed"):
        store._update("r1", boom)
    assert store.path.read_bytes() == before
    assert store.all() == [{"id": "r1", "v": 1}]


def test_leftover_temp_files_are_cleaned_by_the_next_writer(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store._add({"id": "r1"})
    leftover = tmp_path / f".{STORE_FILENAME}.abc123.tmp"
    leftover.write_text('{"half": ')
    unrelated = tmp_path / ".run.json.abc.tmp"
    unrelated.write_text("x")
    store._add({"id": "r2"})
    assert not leftover.exists() and unrelated.exists()
    assert ids(store) == {"r1", "r2"}


# -- fsutil ---------------------------------------------------------------------------------------------


def test_atomic_write_and_read_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": [1, 2]})
    atomic_write_json(path, {"a": [3]})
    assert read_json(path) == {"a": [3]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp files left
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert read_json(path) == {"a": [3]} and len(list(tmp_path.iterdir())) == 1
    path.write_bytes(b"{oops")
    with pytest.raises(ValueError, match=f"{path}.* not valid JSON"):
        read_json(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")


def test_file_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    lock_path = tmp_path / "l.lock"
    with FileLock(lock_path):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=f"{lock_path}.*process {os.getpid()}"):
            FileLock(lock_path, timeout=0.1).acquire()
        assert time.monotonic() - t0 >= 0.1
    with FileLock(lock_path, timeout=0.1):  # released on exit
        pass


# -- several real processes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_updates_from_8_processes_lose_nothing(tmp_path: Path) -> None:
    n_procs, n_updates = 8, 50
    store = Store(tmp_path)
    store._add({"id": "shared", "count": 0})
    for k in range(n_procs):
        store._add({"id": f"p{k}", "values": []})
    go = tmp_path / "go"
    procs = [spawn("update", tmp_path, k, n_updates, go) for k in range(n_procs)]
    go.touch()  # all start together, so their updates interleave
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    assert store.get("shared")["count"] == n_procs * n_updates
    for k in range(n_procs):
        assert store.get(f"p{k}")["values"] == list(range(n_updates))


@pytest.mark.slow
def test_sigkilled_writers_never_damage_committed_records(tmp_path: Path) -> None:
    rng = random.Random(1234)
    store = Store(tmp_path, lock_timeout=5)
    committed: set[str] = set()
    killed_holding = 0
    for rnd in range(30):
        p = spawn("writeloop", tmp_path, f"k{rnd}")
        assert p.stdout is not None
        first = p.stdout.readline() + p.stdout.readline()
        assert first.split() == [f"k{rnd}-0", "ready"]
        time.sleep(rng.uniform(0.0, 0.03))
        rest = first + kill_and_collect(p)
        # Its pid is still in the lock file if it died holding the lock (the flock itself died with it).
        killed_holding += (tmp_path / "store.json.lock").read_text().strip() == str(p.pid)
        printed = {line for line in rest.split() if line.startswith(f"k{rnd}-")}
        assert f"k{rnd}-0" in printed

        # The store loads, holds everything committed before, and at most the one add that was cut short.
        now = ids(Store(tmp_path))
        assert committed | printed <= now
        unconfirmed = now - committed - printed - {"big"}
        assert unconfirmed <= {f"k{rnd}-{len(printed)}"}
        big = store.get("big")
        assert big["payload"] == "x" * 20_000 and big["writer"] == f"k{rnd}"
        committed = now

        # The dead writer's lock is gone: the next writer gets it at once, not after a timeout.
        t0 = time.monotonic()
        store._update("big", {"checked": rnd})
        assert time.monotonic() - t0 < 2
        assert not list(tmp_path.glob(f".{STORE_FILENAME}.*.tmp"))  # leftovers cleaned by that write
    assert len(committed) > 30
    assert killed_holding >= 10  # the writer spends most of its time under the lock, so most kills land there


@pytest.mark.slow
def test_lock_of_a_killed_holder_is_released_by_the_kernel(tmp_path: Path) -> None:
    store = Store(tmp_path, lock_timeout=0.3)
    store._add({"id": "r1"})
    holder = spawn("hold-lock", tmp_path)
    assert holder.stdout is not None
    assert holder.stdout.readline().split() == ["locked", str(holder.pid)]
    try:
        with pytest.raises(TimeoutError, match=f"store.json.lock, held by process {holder.pid}"):
            store._add({"id": "r2"})
        assert ids(store) == {"r1"}  # reads need no lock
    finally:
        kill_and_collect(holder)
    t0 = time.monotonic()
    Store(tmp_path, lock_timeout=2)._add({"id": "r2"})
    assert time.monotonic() - t0 < 1
    assert ids(store) == {"r1", "r2"}


def reported_reads(reader: subprocess.Popen) -> int:
    """The reader's next progress line ("reads N", printed every 10 reads); fails on anything else (an error)."""
    assert reader.stdout is not None
    line = reader.stdout.readline()
    assert line.startswith("reads "), line + reader.stdout.read()
    return int(line.split()[1])


@pytest.mark.slow
def test_reader_never_sees_a_torn_file_while_writers_write(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store._add({"id": "seed"})
    stop = tmp_path / "stop"
    reader = spawn("read", tmp_path, stop)
    writers = [spawn("writeloop", tmp_path, f"w{k}") for k in range(2)]
    try:
        # Events, not a duration: once the writers are writing, the reader reads 50 more times meanwhile.
        wait_until(lambda: len(ids(store)) > 10, "the writers to add 10 runs", timeout=120)
        first = reported_reads(reader)
        while reported_reads(reader) < first + 50:
            pass
    finally:
        for w in writers:
            kill_and_collect(w)
        stop.touch()
    out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0, out
    reads = int(out.split()[-1])
    assert reads >= 60, out
    assert len(ids(store)) > 10  # the writers really wrote meanwhile


# -- corruption and recovery ----------------------------------------------------------------------------


def _runs_with_folders(runs: Path) -> Store:
    store = Store(runs)
    for i in range(3):
        record = {"id": f"r{i}", "status": "done", "created": i}
        write_run_folder(runs, record)
        store._add(record)
    broken = runs / "broken"
    broken.mkdir()
    (broken / "run.json").write_text('{"id": "broken", ')
    (runs / "cache").mkdir()  # not a run: no run.json
    return store


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\xff garbage {{{",
        b'{"runs": {"1": {"id": "r0"}}, "meta": {"1": {"schema_',  # torn, as an in-place write leaves it
        b"[1, 2, 3]",
        b'{"runs": {"1": "not a document"}}',
        b'{"runs": {"1": {"status": "no id"}}}',
        b'{"runs": {"1": {"id": "a"}, "2": {"id": "a"}}}',
    ],
)
def test_corrupt_store_is_moved_aside_and_rebuilt(tmp_path: Path, bad: bytes) -> None:
    store = _runs_with_folders(tmp_path)
    store.path.write_bytes(bad)

    with pytest.raises(StoreCorruptError) as info:
        store.all()
    err = info.value
    assert str(store.path) in str(err) and "amltui store rebuild" in str(err)
    assert err.path == store.path and str(err.backup_path) in str(err)
    assert err.backup_path.read_bytes() == bad  # kept aside, byte for byte
    assert not store.path.exists()

    # Until rebuilt, writers and readers keep refusing rather than showing an empty index.
    with pytest.raises(StoreCorruptError, match="found corrupt earlier.*amltui store rebuild"):
        store._add({"id": "new"})
    with pytest.raises(StoreCorruptError):
        store.get("r0")

    report = store.rebuild()
    assert report.restored == 3 and report.kept == []
    assert report.backup_path == err.backup_path
    assert [(p.parent.name, "not valid JSON" in why) for p, why in report.skipped] == [("broken", True)]
    assert [r["id"] for r in store.all()] == ["r0", "r1", "r2"]
    assert store.get("r1") == {"id": "r1", "status": "done", "created": 1}
    assert err.backup_path.read_bytes() == bad
    store._add({"id": "new"})  # usable again


def test_corruption_found_by_a_writer_is_moved_aside_too(tmp_path: Path) -> None:
    store = _runs_with_folders(tmp_path)
    store.path.write_bytes(b'{"runs": 5}')
    with pytest.raises(StoreCorruptError, match="table 'runs'") as info:
        store._update("r0", {"status": "x"})
    assert info.value.backup_path.read_bytes() == b'{"runs": 5}'
    assert store.rebuild().restored == 3


def test_read_retries_while_a_bad_file_is_being_replaced(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store._add({"id": "r1"})
    good = store.path.read_bytes()
    store.path.write_bytes(good[: len(good) // 2])  # as if written in place by something else, then replaced
    fixer = threading.Timer(0.02, lambda: atomic_write_bytes(store.path, good))
    fixer.start()
    try:
        assert ids(store) == {"r1"}
    finally:
        fixer.join()
    assert not list(tmp_path.glob("store.json.corrupt-*"))


def test_rebuild_prefers_run_folders_and_keeps_index_only_records(tmp_path: Path) -> None:
    store = _runs_with_folders(tmp_path)
    store._update("r0", {"status": "stale view"})
    store._add({"id": "queued-1", "status": "queued"})  # no folder yet
    atomic_write_json(tmp_path / "r2" / "run.json", {"id": "other", "status": "done"})  # copied folder
    report = store.rebuild()
    # r2's folder is unusable, so its old index record is the best there is: kept, and the folder reported.
    assert report.restored == 2 and report.kept == ["r2", "queued-1"] and report.backup_path is None
    reasons = {p.parent.name: why for p, why in report.skipped}
    assert set(reasons) == {"broken", "r2"} and "does not match its folder name" in reasons["r2"]
    assert ids(store) == {"r0", "r1", "r2", "queued-1"}
    assert store.get("r0")["status"] == "done"  # the run folder is the ground truth
    # Kept, but marked damaged (issue 12): nothing on disk backs it any more.
    r2 = store.get("r2")
    assert r2.pop("damaged").startswith("no readable run.json")
    assert r2 == {"id": "r2", "status": "done", "created": 2}


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    store = Store(tmp_path)
    newer = json.dumps({"runs": {"1": {"id": "r1"}}, "meta": {"1": {"schema_version": SCHEMA_VERSION + 1}}})
    store.path.write_text(newer)
    for attempt in (store.all, lambda: store.get("r1"), lambda: store._add({"id": "r2"}), store.rebuild):
        with pytest.raises(StoreSchemaError, match="upgrade amltui") as info:
            attempt()
        assert isinstance(info.value, StoreError) and str(store.path) in str(info.value)
    assert store.schema_version() == SCHEMA_VERSION + 1
    assert store.path.read_text() == newer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.json", "store.json.lock"]
