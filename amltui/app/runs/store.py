"""The run index: a TinyDB file (runs/store.json) that several processes may read and write at once.

TinyDB alone is not multi-process safe, so every mutation is: take an flock on ``store.json.lock`` → open
TinyDB on a storage whose ``write`` is an atomic replace → mutate → close → unlock. Reads take no lock: an
atomic replace means a reader sees the old or the new file, never a torn one (they still retry a decode error,
in case something else wrote the file non-atomically). A file that stays unreadable or has the wrong shape is
moved aside to ``store.json.corrupt-<UTC time>`` and reported; ``Store.rebuild`` recreates the index from the
run folders (``runs/<id>/run.json``), which are the ground truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from amltui.app import fsutil
from amltui.app.fsutil import (
    FileLock,
    atomic_write_bytes,
    atomic_write_json,
    dumps_json,
    parse_json,
    read_bytes_bounded,
    read_json,
    refuse_planted_links,
    refuse_symlink,
)
from amltui.app.runs.records import DAMAGED, RunRecord, now, record_problems

SCHEMA_VERSION = 1
STORE_FILENAME = "store.json"
RUN_RECORD_FILENAME = "run.json"
RUN_LOCK_FILENAME = ".lock"  # in a run folder: serializes every change of its run.json (update_record)
RUNS_TABLE = "runs"
META_TABLE = "meta"
CORRUPT_MARK = ".corrupt-"
REBUILD_HINT = "run `amltui store rebuild` to recreate the index from the run folders"

# Starts with an alphanumeric, so "." / ".." / hidden names are impossible; no "/" can appear.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RUN_ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
# Names amltui itself keeps in the runs folder: a run folder of that name would clobber or swallow them.
RESERVED_RUN_IDS = frozenset({STORE_FILENAME, STORE_FILENAME + ".lock", "scheduler.log", "cache", "reports",
                              "slurm", "locks", "slots", "tmp"})
RESERVED_RUN_ID_PATTERN = re.compile(r"store\.json\..*|results-.*\.md|invariance-.*\.png", re.IGNORECASE)

MAX_INDEX_BYTES = 256 * 2**20  # about a million runs; past it the index is damage (docs/reliability.md)
_READ_ATTEMPTS = 5  # a decode error is retried this many times (with backoff) before declaring corruption


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe run folder name, else raise ValueError spelling out the rule."""
    if not isinstance(run_id, str):
        raise ValueError(f"run id must be a string ({_RUN_ID_RULE}), got {type(run_id).__name__} {run_id!r}")
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}: a run id must be {_RUN_ID_RULE}")
    if run_id.lower() in RESERVED_RUN_IDS or RESERVED_RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r} is reserved: amltui keeps a file or folder of that name in the runs "
                         f"folder ({', '.join(sorted(RESERVED_RUN_IDS))}, store.json.*, results-*.md, "
                         "invariance-*.png); pick another id")
    return run_id


class StoreError(RuntimeError):
    """A store operation failed for a reason the user can act on."""


class StoreCorruptError(StoreError):
    """The index file was unreadable or malformed; it has been moved to ``backup_path``."""

    def __init__(self, path: Path, backup_path: Path | None, reason: str, *, earlier: bool = False) -> None:
        self.path = path
        self.backup_path = backup_path
        self.reason = reason
        when = "was found corrupt earlier" if earlier else "is corrupt"
        where = f"moved aside to {backup_path}" if backup_path else "left in place"
        super().__init__(f"run index {path} {when} ({reason}); the bad file was {where}; {REBUILD_HINT}")


class StoreSchemaError(StoreError):
    """The index was written by a newer amltui with a schema this version cannot read."""

    def __init__(self, path: Path, found_version: int) -> None:
        self.path = path
        self.found_version = found_version
        super().__init__(
            f"run index {path} has schema version {found_version}, but this amltui understands only up to "
            f"{SCHEMA_VERSION}; upgrade amltui (pip install -U amltui) to use it. The file was left "
            "untouched."
        )


class _Undecodable(Exception):
    """Internal: the file at hand could not be parsed or has the wrong structure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_tables(data: Any, path: Path) -> dict[str, dict[str, dict]]:
    """Validate the parsed file; raises _Undecodable (wrong shape) or StoreSchemaError (newer schema)."""
    if not isinstance(data, dict):
        raise _Undecodable(f"top level is a JSON {type(data).__name__}, expected an object of tables")
    for name, table in data.items():
        if not isinstance(table, dict):
            raise _Undecodable(f"table {name!r} is a JSON {type(table).__name__}, expected an object")
        for doc_id, doc in table.items():
            if not doc_id.isdigit() or not isinstance(doc, dict):
                raise _Undecodable(f"table {name!r} has a malformed document under key {doc_id!r}")
    for doc in data.get(META_TABLE, {}).values():
        if "schema_version" in doc:
            version = doc["schema_version"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise _Undecodable(f"schema_version is {version!r}, expected a positive integer")
            if version > SCHEMA_VERSION:
                raise StoreSchemaError(path, version)
    seen: set[str] = set()
    for doc_id, doc in data.get(RUNS_TABLE, {}).items():
        run_id = doc.get("id")
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
            raise _Undecodable(f"run document {doc_id} has no valid 'id' (found {run_id!r})")
        if run_id in seen:
            raise _Undecodable(f"run id {run_id!r} appears twice")
        seen.add(run_id)
    return data


class AtomicJSONStorage(Storage):
    """TinyDB storage: ``read`` parses the whole file, ``write`` atomically replaces it.

    Missing or empty file = empty database. ``write`` always stamps the schema version into the meta table.
    """

    def __init__(self, path: Path, attempts: int = _READ_ATTEMPTS) -> None:
        self.path = Path(path)
        self.attempts = attempts

    def read(self) -> dict[str, dict[str, Any]] | None:
        for attempt in range(self.attempts):
            try:
                return self._read_once()
            except _Undecodable:
                if attempt == self.attempts - 1:
                    raise
                time.sleep(0.02 * 2**attempt)
        return None  # unreachable; keeps type checkers content

    def _read_once(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = read_bytes_bounded(self.path, MAX_INDEX_BYTES)
        except IsADirectoryError:
            raise StoreError(f"{self.path} is a folder, not the run index; move it out of the way "
                             f"(e.g. mv {self.path} {self.path}.folder), then run `amltui store rebuild`") from None
        except PermissionError as e:
            raise StoreError(f"cannot read the run index {self.path}: {e.strerror}; check its permissions") from None
        except FileNotFoundError:
            earlier = _latest_backup(self.path)
            if earlier is not None:
                # Moved aside and not rebuilt yet: an empty index now would silently hide every run.
                reason = "no index file since then"
                raise StoreCorruptError(self.path, earlier, reason, earlier=True) from None
            return None
        except OSError as e:  # a FIFO or device in its place, or past the size bound: refused, never waited on
            raise _Undecodable(str(e.strerror)) from None
        if not raw.strip():
            return None
        try:
            data = parse_json(raw, "the index")
        except ValueError as e:
            raise _Undecodable(str(e)) from None
        return _check_tables(data, self.path)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        data = dict(data)
        data[META_TABLE] = {"1": {"schema_version": SCHEMA_VERSION}}
        atomic_write_bytes(self.path, dumps_json(data))


def _latest_backup(path: Path) -> Path | None:
    backups = sorted(path.parent.glob(path.name + CORRUPT_MARK + "*"))
    return backups[-1] if backups else None


def _plain_json(record: Mapping, run_id: str) -> None:
    try:
        json.dumps(record, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"record of run {run_id!r} is not plain JSON ({e}); use dict/list/str/int/float/bool/None values"
        ) from None


def _check_record(record: Any) -> str:
    """Validate a record given to add/put; returns its id."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a run record must be a dict, got {type(record).__name__}")
    if "id" not in record:
        raise ValueError("a run record needs an 'id' key (the run's folder name)")
    run_id = validate_run_id(record["id"])
    _plain_json(record, run_id)
    return run_id


def _sort_key(record: dict) -> tuple:
    created = record.get("created")
    if isinstance(created, int | float) and not isinstance(created, bool):
        rank = (0, float(created), "")
    elif isinstance(created, str):
        rank = (1, 0.0, created)
    else:  # missing or odd type: last
        rank = (2, 0.0, "")
    return (*rank, record["id"])


@dataclass
class RebuildReport:
    """What ``Store.rebuild`` did."""

    restored: int
    skipped: list[tuple[Path, str]]
    kept: list[str] = field(default_factory=list)  # old index records with no usable run.json, marked damaged
    backup_path: Path | None = None  # where a corrupt old index was moved, if there was one
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (run id, reason) of records marked damaged


class Store:
    """Multi-process-safe index of run records in ``runs_dir/store.json``."""

    def __init__(self, runs_dir: Path, *, lock_timeout: float = 30.0) -> None:
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.runs_dir / STORE_FILENAME
        self.lock_path = self.runs_dir / (STORE_FILENAME + ".lock")
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"Store({str(self.runs_dir)!r})"

    # -- plumbing ----------------------------------------------------------------------------------------

    def lock(self) -> FileLock:
        """The lock that serializes writers, for callers that must pair other file writes with it.

        Not reentrant: do not write this store (update_record, create_records, delete_record, rebuild) while
        holding it.
        """
        return FileLock(self.lock_path, timeout=self.lock_timeout)

    def _db(self, attempts: int) -> TinyDB:
        return TinyDB(self.path, storage=AtomicJSONStorage, attempts=attempts)

    @staticmethod
    def _runs(db: TinyDB) -> Table:
        # cache_size=0: other processes change the file, so a cached query result could be stale.
        return db.table(RUNS_TABLE, cache_size=0)

    def _quarantine_locked(self) -> StoreCorruptError | None:
        """Holding the lock: if the file is still bad, move it aside and return the error, else None."""
        try:
            AtomicJSONStorage(self.path, attempts=1).read()
            return None
        except _Undecodable as e:
            reason = e.reason
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        backup = self.path.with_name(self.path.name + CORRUPT_MARK + stamp)
        n = 1
        while backup.exists():
            backup = self.path.with_name(f"{self.path.name}{CORRUPT_MARK}{stamp}-{n}")
            n += 1
        os.rename(self.path, backup)  # a rename keeps the exact bytes for inspection
        fsutil.fsync_dir(self.runs_dir)
        return StoreCorruptError(self.path, backup, reason)

    def _clean_temp_files(self) -> None:
        # Holding the lock, no writer is mid-write: any temp file of the index is a killed writer's leftover.
        for tmp in self.runs_dir.glob(fsutil.temp_prefix(self.path) + "*" + fsutil.TMP_SUFFIX):
            tmp.unlink(missing_ok=True)

    def _read(self, fn: Callable[[Table], Any]) -> Any:
        for _ in range(3):
            db = self._db(_READ_ATTEMPTS)
            try:
                return fn(self._runs(db))
            except _Undecodable:
                with self.lock():
                    err = self._quarantine_locked()
                if err is not None:
                    raise err from None
                # A writer fixed the file meanwhile: read again.
            finally:
                db.close()
        raise StoreError(f"{self.path} keeps turning unreadable; is another program writing it in place?")

    @contextmanager
    def _writing(self) -> Iterator[Table]:
        with self.lock():
            self._clean_temp_files()
            db = self._db(1)  # under the lock the file is stable: retrying a bad read is pointless
            try:
                yield self._runs(db)
            except _Undecodable:
                # Raised by the first read in the body, before anything was written.
                err = self._quarantine_locked()
                raise (err or StoreError(f"{self.path} was unreadable, then fine, while locked")) from None
            finally:
                db.close()

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, run_id: str) -> dict | None:
        validate_run_id(run_id)
        doc = self._read(lambda t: t.get(Query().id == run_id))
        return dict(doc) if doc is not None else None

    def all(self) -> list[dict]:
        """Every run record, sorted by "created" (numbers, then strings, then missing) and then id."""
        records = [dict(d) for d in self._read(lambda t: t.all())]
        return sorted(records, key=_sort_key)

    def find(self, **equals: Any) -> list[dict]:
        """Records having every given key with exactly the given value, in ``all()`` order."""
        if not equals:
            return self.all()
        records = [dict(d) for d in self._read(lambda t: t.search(Query().fragment(equals)))]
        return sorted(records, key=_sort_key)

    def __contains__(self, run_id: str) -> bool:
        return self.get(run_id) is not None

    def schema_version(self) -> int:
        """Schema version recorded in the file (SCHEMA_VERSION for a store not written yet)."""
        try:
            data = self._read(lambda t: t.storage.read()) or {}
        except StoreSchemaError as e:
            return e.found_version
        for doc in data.get(META_TABLE, {}).values():
            if "schema_version" in doc:
                return int(doc["schema_version"])
        return SCHEMA_VERSION

    # -- writes ------------------------------------------------------------------------------------------
    # Private on purpose: outside this module the index is written only by the named functions below the class
    # (update_record, update_records, create_records, delete_record, mark_folderless) and rebuild, so run.json
    # and the index never disagree. tests/app/test_rules.py fails when code outside store.py calls these.

    def _add(self, record: dict) -> None:
        """Insert a new run record; a record with the same id already there is a StoreError."""
        run_id = _check_record(record)
        with self._writing() as runs:
            if runs.contains(Query().id == run_id):
                raise StoreError(f"run {run_id!r} is already in {self.path}; a new run needs a new id")
            runs.insert(dict(record))

    def _add_many(self, records: list[dict]) -> None:
        """Insert new records in one write (queueing hundreds of runs must not rewrite the file per run)."""
        ids = [_check_record(r) for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError("_add_many was given the same run id twice")
        with self._writing() as runs:
            present = [i for i in ids if runs.contains(Query().id == i)]
            if present:
                raise StoreError(f"run {present[0]!r} is already in {self.path}; a new run needs a new id")
            runs.insert_multiple(dict(r) for r in records)

    def _put(self, record: dict) -> None:
        """Insert or replace (whole record) the run with this record's id."""
        run_id = _check_record(record)
        with self._writing() as runs:
            self._replace(runs, run_id, dict(record))

    def _put_many(self, records: list[dict]) -> None:
        """``_put`` of many records in one write of the index (tagging 200 runs must not rewrite it 200 times)."""
        for record in records:
            _check_record(record)
        with self.lock():
            self._clean_temp_files()
            storage = AtomicJSONStorage(self.path, attempts=1)
            try:
                data = storage.read() or {}
            except _Undecodable:
                err = self._quarantine_locked()
                raise (err or StoreError(f"{self.path} was unreadable, then fine, while locked")) from None
            table = data.setdefault(RUNS_TABLE, {})
            keys = {doc["id"]: key for key, doc in table.items()}
            next_key = max(map(int, table), default=0) + 1
            for record in records:
                if record["id"] not in keys:
                    keys[record["id"]], next_key = str(next_key), next_key + 1
                table[keys[record["id"]]] = dict(record)
            storage.write(data)

    @staticmethod
    def _replace(runs: Table, run_id: str, new: dict) -> None:
        doc = runs.get(Query().id == run_id)
        if doc is None:
            runs.insert(new)
            return

        def swap(stored: dict) -> None:
            stored.clear()  # replace, not merge: keys the caller removed must go
            stored.update(new)

        runs.update(swap, doc_ids=[doc.doc_id])

    def _update(self, run_id: str, changes: dict | Callable[[dict], dict]) -> dict:
        """Atomically change one record and return the new one.

        ``changes`` is either a dict merged into the record, or a function from the current record (a copy)
        to the new record, called while the lock is held (keep it quick; it must not use this store).
        """
        validate_run_id(run_id)
        with self._writing() as runs:
            doc = runs.get(Query().id == run_id)
            if doc is None:
                raise StoreError(f"no run {run_id!r} in {self.path}; `amltui ls` lists the known runs")
            current = json.loads(json.dumps(dict(doc)))  # deep copy: the function may mutate freely
            if callable(changes):
                new = changes(current)
                if not isinstance(new, Mapping):
                    got = type(new).__name__
                    raise TypeError(f"update function for run {run_id!r} returned {got}, not a dict")
            elif isinstance(changes, Mapping):
                new = {**current, **changes}
            else:
                raise TypeError(f"changes must be a dict or a function, got {type(changes).__name__}")
            new = dict(new)
            if new.get("id") != run_id:
                raise ValueError(f"an update may not change a run's id ({run_id!r} -> {new.get('id')!r})")
            _plain_json(new, run_id)
            self._replace(runs, run_id, new)
            return new

    def _remove(self, run_id: str) -> bool:
        """Delete the record; False if there was none. The run folder is not touched."""
        validate_run_id(run_id)
        with self._writing() as runs:
            return bool(runs.remove(Query().id == run_id))

    # -- recovery ----------------------------------------------------------------------------------------

    def rebuild(self) -> RebuildReport:
        """Rewrite the index from ``runs_dir/*/run.json``.

        The run folders win over the old index. Records of a readable old index that no usable run.json
        replaces are kept, marked ``damaged``, and listed in ``kept``; records whose fields have the wrong
        type are marked ``damaged`` too (amltui.app.runs.records), so listings show them as such. A corrupt old index
        is moved aside, never deleted. A newer schema raises StoreSchemaError and changes nothing. Folders
        without a run.json are not runs and are ignored; a run.json that cannot be used is listed in
        ``skipped`` with the reason.
        """
        with self.lock():
            old, backup = self._old_records_locked()
            records, skipped = self._folder_records()
            kept = _mark_damaged(records, old, self.runs_dir)
            damaged = [(r["id"], r[DAMAGED]) for r in records + kept if r.get(DAMAGED)]
            table = {str(i): r for i, r in enumerate(records + kept, start=1)}
            AtomicJSONStorage(self.path).write({RUNS_TABLE: table})
            self._clean_temp_files()
            return RebuildReport(len(records), skipped, [r["id"] for r in kept], backup, damaged)

    def _old_records_locked(self) -> tuple[list[dict], Path | None]:
        """Holding the lock: the records of the current index and, if it was corrupt, where it was moved."""
        try:
            tables = AtomicJSONStorage(self.path, attempts=1).read() or {}
            return list(tables.get(RUNS_TABLE, {}).values()), None
        except _Undecodable:
            err = self._quarantine_locked()
            return [], err.backup_path if err else None
        except StoreCorruptError as e:  # moved aside earlier
            return [], e.backup_path

    def _folder_records(self) -> tuple[list[dict], list[tuple[Path, str]]]:
        """The records of the run folders, and the run.json files that cannot be used (with the reason)."""
        records: list[dict] = []
        skipped: list[tuple[Path, str]] = []
        for folder in sorted(p for p in self.runs_dir.iterdir() if p.is_dir()):
            record_path = folder / RUN_RECORD_FILENAME
            if not record_path.is_file():
                continue
            if folder.is_symlink():
                skipped.append((folder, "a symbolic link, not a run folder (amltui never follows one)"))
                continue
            try:
                records.append(_read_run_json(record_path, folder.name))
            except (OSError, ValueError) as e:
                skipped.append((record_path, str(e)))
        return records, skipped


def _read_run_json(path: Path, run_id: str) -> dict:
    """The record in a run folder's run.json; ValueError/OSError when it is not that run's record."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise ValueError(f"holds a JSON {type(record).__name__}, expected an object")
    validate_run_id(record.get("id"))
    if record["id"] != run_id:
        raise ValueError(f"its id {record['id']!r} does not match its folder name")
    return record


def _mark_damaged(records: list[dict], old: list[dict], runs_dir: Path) -> list[dict]:
    """Mark the folder records with mistyped fields, and return the old index's records no folder backs
    (kept so that nothing vanishes silently, but marked: without a run.json nothing backs them)."""
    on_disk = {r["id"] for r in records}
    kept = [r for r in old if r["id"] not in on_disk]
    for r in kept:
        r[DAMAGED] = f"no readable {RUN_RECORD_FILENAME} in {runs_dir / r['id']}"
    for r in records:
        r.pop(DAMAGED, None)
        problems = record_problems(r)
        if problems:
            r[DAMAGED] = "; ".join(problems)
    return kept


class Unchanged:
    """What an update function returns to leave the record as it is (``update_record`` then returns None)."""


SKIP = Unchanged()
Updater = Callable[[RunRecord], Any]  # returns None (changed in place), the new record, or SKIP


def update_record(where: Store | Path, run_id: str, fn: Updater) -> dict[str, Any] | None:
    """THE way to change a run record: a locked read-modify-write of its run.json and its index entry.

    Under the run folder's lock (``<run>/.lock``), ``fn`` gets the current record (a fresh dict from run.json,
    the ground truth) and either changes it in place and returns None, returns the new record, or returns
    ``SKIP`` to change nothing (a condition did not hold). The result is stamped ``updated``, written to
    run.json atomically and then put into the index, so the two agree and no field another process wrote
    meanwhile (a cancel request, Slurm's job id, progress) is ever lost. Returns the new record, or None
    after ``SKIP``. Keep ``fn`` quick: every other writer of this run waits for it. A missing or unreadable
    run.json raises OSError / ValueError naming the file.
    """
    store = where if isinstance(where, Store) else Store(where)
    folder = store.runs_dir / validate_run_id(run_id)
    # A linked run folder, or a link planted in it or at the index's lock, would take a write below out of the
    # runs folder: refused before anything is written (the writes refuse links themselves too).
    refuse_planted_links(folder)
    refuse_symlink(store.lock_path)
    with FileLock(folder / RUN_LOCK_FILENAME):
        new = _updated(folder, run_id, fn)
        if new is None:
            return None
        atomic_write_json(folder / RUN_RECORD_FILENAME, new)
        store._put(new)
    return new


def update_records(store: Store, run_ids: list[str], fn: Updater) -> list[dict[str, Any] | None]:
    """``update_record`` of many runs with one write of the index: each run's lock is held (taken in id order,
    so two batches never wait on each other), every run.json is read and changed before any file is written
    (a run that cannot be read raises and changes nothing), then the run.json files and the index are written.
    Returns the new record (None after ``SKIP``) per id, in the order given."""
    unique = sorted(set(run_ids))
    folders = {run_id: store.runs_dir / validate_run_id(run_id) for run_id in unique}
    with contextlib.ExitStack() as locks:
        for run_id in unique:
            locks.enter_context(FileLock(folders[run_id] / RUN_LOCK_FILENAME))
        new = {run_id: _updated(folders[run_id], run_id, fn) for run_id in unique}
        changed = [record for record in new.values() if record is not None]
        for record in changed:
            atomic_write_json(folders[record["id"]] / RUN_RECORD_FILENAME, record)
        if changed:
            store._put_many(changed)
    return [new[run_id] for run_id in run_ids]


def create_records(store: Store, records: list[dict[str, Any]]) -> None:
    """Index new runs (their folders and run.json are written already) in one write of the index; a run
    already indexed is a StoreError and nothing is added."""
    store._add_many(records)


def delete_record(store: Store, run_id: str) -> bool:
    """Remove a run's record from the index (its folder is deleted already, or was gone); False if there was
    none. The run folder is not touched."""
    return store._remove(run_id)


def mark_folderless(store: Store, run_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change the index record of a run whose folder is gone (nothing else holds it, so no run.json can be
    written with it); a run that has a folder is changed only by update_record (ValueError here)."""
    folder = store.runs_dir / validate_run_id(run_id)
    if folder.is_dir() and not folder.is_symlink():
        raise ValueError(f"run {run_id!r} has its folder {folder}; change it with update_record")
    return store._update(run_id, changes)


def _updated(folder: Path, run_id: str, fn: Updater) -> dict[str, Any] | None:
    """Holding the run's lock: its record as ``fn`` changes it (stamped and checked), or None after SKIP."""
    record = read_json(folder / RUN_RECORD_FILENAME)
    if not isinstance(record, dict):
        raise ValueError(f"{folder / RUN_RECORD_FILENAME} holds a JSON {type(record).__name__}, not a run "
                         f"record; {REBUILD_HINT}")
    result = fn(record)
    if isinstance(result, Unchanged):
        return None
    new = dict(record if result is None else result)
    if new.get("id") != run_id:
        raise ValueError(f"an update may not change a run's id ({run_id!r} -> {new.get('id')!r})")
    new["updated"] = now()
    _check_record(new)  # plain JSON, before anything is written
    return new
