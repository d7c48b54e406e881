"""The run record: its fields (``RunRecord``), its statuses (``Status``), and checking a record before anything
shows, counts or acts on it. Records are changed only through amltui.app.runs.store.update_record.

A record comes from a JSON file that a crash, a full disk, another tool or a person may have damaged: a field
of the wrong type, a NaN metric, a run folder deleted or a run.json garbled under a live index. ``inspect``
turns such a record into a safe one with status ``damaged`` and the reason, so one bad run never takes a
listing, an export or the dashboard down with it, and its numbers are never reported as results.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypedDict, Union, get_args, get_origin, get_type_hints

from amltui.app.fsutil import read_json


class Status(StrEnum):
    """The status of a run. ``stalled`` and ``orphaned`` come from the liveness and scheduler checks
    (amltui/app/executors/liveness.py); ``damaged`` is never written: it marks a record that cannot be read."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALLED = "stalled"
    ORPHANED = "orphaned"
    DAMAGED = "damaged"


DAMAGED = Status.DAMAGED
# Every status amltui writes. A new status must be added here, or its runs are shown as damaged.
STATUSES = tuple(s for s in Status if s is not Status.DAMAGED)
# Every set of statuses lives here (tests/app/test_rules.py fails on one built anywhere else).
STOPPED = frozenset({Status.FAILED, Status.CANCELLED})  # ended without finishing
TERMINAL = frozenset({Status.DONE, *STOPPED})
WORKING = frozenset({Status.RUNNING, Status.STALLED})  # a worker owns the run (or did, until it is found gone)
UNSTARTED = frozenset({Status.QUEUED, Status.ORPHANED})  # no worker yet: cancelling is a status change
LIVE = frozenset({*UNSTARTED, *WORKING})  # not finished: can be cancelled
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})  # waiting for or held by a worker (or a Slurm job)
RESUMABLE = frozenset({*STOPPED, Status.ORPHANED})  # queued again, from the checkpoint
# The order of a status column (runs view, sort by status): what needs attention first, finished runs last.
STATUS_RANK: dict[str, int] = {status: rank for rank, status in enumerate((
    Status.RUNNING, Status.STALLED, Status.QUEUED, Status.ORPHANED, Status.FAILED, Status.DAMAGED, Status.CANCELLED,
    Status.DONE))}
SUBMITTABLE = frozenset({Status.QUEUED, *STOPPED})  # what a Slurm submission may (re)queue
REPAIR_HINT = "`amltui store rebuild` re-reads the run folders; `amltui rm RUN` deletes the run"

# A Slurm job id: 123, an array task 123_4, a het-job part 123+1, optionally a step (.0, .batch).
SLURM_JOB_ID = re.compile(r"[0-9]{1,20}(_[0-9]{1,10}|\+[0-9]{1,4})?(\.[0-9A-Za-z]{1,16})?")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now() -> str:
    """The time stamp of every record field that holds a time (``created``, ``started``, ``updated``, …)."""
    return dt.datetime.now(dt.UTC).strftime(TIME_FORMAT)


def parse_time(text: Any) -> float | None:
    """A ``now()`` stamp as a Unix time; None for anything else."""
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.UTC).timestamp()
    except (TypeError, ValueError):
        return None


SIGNED = "may be negative"  # Annotated mark of a whole number that may be below 0 (the seed)
PERCENT = "a percentage"  # Annotated mark of a mapping of accuracies: each in [0, 100], or the record is damaged


@dataclass(frozen=True)
class Matches:
    """Annotated mark of a text field whose value must match ``pattern`` (``what`` names it in messages)."""

    pattern: re.Pattern[str]
    what: str


@dataclass(frozen=True)
class Items:
    """Annotated mark naming one entry of a mapping field in messages (``metric A_orig is nan``)."""

    name: str


Stamp = str  # a now() stamp


class RunRecord(TypedDict, total=False):
    """Every field of a run record (run.json, and the same dict in the index runs/store.json).

    Records travel as plain JSON dicts, so this is a TypedDict: code reads and writes them as dicts, a type
    checker sees the fields, and ``record_problems`` validates a record against these declarations. A field
    of a mistyped value marks the record damaged (``inspect``). Fields not declared here are allowed and left
    alone (tests and tools add their own). Change a record only through amltui.app.runs.store.update_record.
    """

    # What ran: written once, by amltui.app.runs.folders.create_runs.
    id: str
    status: Status
    variant: str | None
    seed: Annotated[int, SIGNED]
    dataset: str | None
    preset: str | None
    arch: str | None
    overrides: list[str]  # the user's key=value overrides, as given
    group: str | None  # runs with equal groups differ only in the seed (pooled into one table row)
    context: str | None  # like group but blind to the variant (which baseline a run is compared with)
    config: dict[str, Any] | None  # the resolved config; see amltui.app.runs.folders._new_record for why it is here too
    config_diff: dict[str, Any] | None
    code_version: str | None
    created: Stamp | float  # the store also sorts numeric times (written by older tools)
    sweep: str | None  # the sweep the run belongs to, if any
    tags: list[str]
    note: str | None  # the user's note on the run

    # Progress and outcome: written by the worker (amltui.app.science.execution.execute).
    started: Stamp | None
    ended: Stamp | None
    updated: Stamp | None  # stamped by every update_record
    epoch: int
    epochs: int
    last: dict[str, Any] | None  # the last epoch's metrics line
    metrics: Annotated[dict[str, float] | None, Items("metric"), PERCENT]
    metrics_n: dict[str, Any] | None  # how many test images each metric was measured on
    fingerprint: str | None  # of the data the run saw
    n_train: int | None
    n_test: int | None
    device: str | None
    host: str | None
    pid: int | None
    pid_start: int | None  # the worker's start time (/proc/<pid>/stat): a reused pid is not taken for it
    slot: str | None
    gpu: str | None
    gpu_uuid: str | None
    gpu_peak_mib: float | None
    error: str | None
    traceback: str | None
    resumes: int | None
    select: str | None
    selected_epoch: int | None
    monitor: str | None
    n_holdout: int | None
    pgd: dict[str, Any] | None
    target_table_note: str | None
    inv_agreement: dict[str, Any] | None
    autoattack: dict[str, Any] | None
    flags: list[str]
    flag_details: list[dict[str, Any]]

    # Written by others: cancel, liveness, the executors, later evaluations.
    cancel_requested: str | None  # the reason; the worker stops at its next safe point
    stall: str | None  # why the run shows stalled
    executor: str | None  # "local" or "slurm"
    slurm_job_id: Annotated[str | int | None, Matches(SLURM_JOB_ID, "a Slurm job id")]
    slurm_folder: str | None
    slurm_partition: str | None
    slurm_time_min: int | None
    slurm_gpus_per_node: int | None
    submitted: Stamp | None
    evaluated: Stamp | None
    checks: dict[str, Any] | None
    human_sets: dict[str, Any] | None

    # Never in run.json: the index's mark (`store rebuild`) and what inspect adds to a damaged record.
    damaged: str | None
    stored_status: str | None


@dataclass(frozen=True)
class _Rule:
    """How one declared field is checked, described and, when mistyped, made safe."""

    kinds: tuple[Any, ...]  # the types allowed besides None
    optional: bool
    marks: tuple[Any, ...]

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if not any(_is_a(value, kind) for kind in self.kinds):
            return False
        return all(m.pattern.fullmatch(str(value)) for m in self.marks if isinstance(m, Matches))

    def min_ok(self, value: Any) -> bool:
        return SIGNED in self.marks or not _is_int(value) or value >= 0

    @property
    def expected(self) -> str:
        text = " or ".join(_describe(k) for k in self.kinds)
        return text + (" or null" if self.optional and not self._item_kind else "")

    @property
    def _item_kind(self) -> Any:
        """The value type of a mapping field whose entries are checked one by one (metrics), else None."""
        kind = self.kinds[0]
        return get_args(kind)[1] if len(self.kinds) == 1 and get_origin(kind) is dict and get_args(kind)[1] in (
            float, int) else None

    def problems(self, key: str, value: Any) -> list[str]:
        for mark in self.marks:
            if isinstance(mark, Matches) and value is not None and not self.ok(value):
                return [f"{key} is {value!r}, which is not {mark.what}"]
        if not self.ok(value) or not self.min_ok(value):
            return [f"{key} is {value!r}, expected {self.expected}"]
        item = self._item_kind
        if item is None or value is None:
            return []
        name = next((m.name for m in self.marks if isinstance(m, Items)), key)
        expected = "a finite number from 0 to 100" if PERCENT in self.marks else "a finite number"
        return [f"{name} {k} is {v!r}, expected {expected}" for k, v in value.items() if not self._item_ok(v)]

    def _item_ok(self, value: Any) -> bool:
        return _is_a(value, self._item_kind) and (PERCENT not in self.marks or 0 <= value <= 100)

    def safe(self, value: Any) -> Any:
        """A value of the right type in place of a mistyped (or partly mistyped) one."""
        item = self._item_kind
        if item is not None:
            return {k: v for k, v in value.items() if self._item_ok(v)} if isinstance(value, dict) else {}
        if self.ok(value) and self.min_ok(value):
            return value
        if str in self.kinds and not self.marks:
            return str(value)  # keep what it says
        base = get_origin(self.kinds[0]) or self.kinds[0]
        if base in (dict, list):
            return base()
        if self.optional or SIGNED in self.marks:
            return None  # a made-up seed would pool the run with that seed's runs
        return 0 if base is int else None



def _is_a(value: Any, kind: Any) -> bool:
    base = get_origin(kind) or kind
    if base is int:
        return _is_int(value)
    if base is float:
        return _finite(value)
    if base is Status:
        return value in STATUSES
    if base is Any:
        return True
    if not isinstance(value, base):
        return False
    if base is list and get_args(kind) and get_args(kind)[0] is str:
        return all(isinstance(v, str) for v in value)
    return True


def _describe(kind: Any) -> str:
    base = get_origin(kind) or kind
    if base is Status:
        return f"one of {', '.join(STATUSES)}"
    if base is dict and get_args(kind) and get_args(kind)[1] in (float, int):
        return "an object of numbers"
    if base is list and get_args(kind) == (str,):
        return "a list of text"
    return {int: "a whole number", float: "a finite number", str: "text", list: "a list",
            dict: "an object", bool: "true or false"}.get(base, getattr(base, "__name__", str(base)))


def _rule_of(hint: Any) -> _Rule:
    marks: tuple[Any, ...] = ()
    if get_origin(hint) is Annotated:
        hint, *rest = get_args(hint)
        marks = tuple(rest)
    kinds = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    return _Rule(tuple(k for k in kinds if k is not type(None)), type(None) in kinds, marks)


# One rule per declared field, derived from RunRecord's annotations (id is the store's to check).
RULES: dict[str, _Rule] = {key: _rule_of(hint) for key, hint in
                           get_type_hints(RunRecord, include_extras=True).items() if key != "id"}
FIELDS = ("id", *RULES)
# The fields whose value is one scalar (or a list of text, as tags): what a `key=value` filter can name.
SCALAR_FIELDS = ("id", *(k for k, rule in RULES.items()
                         if not any((get_origin(kind) or kind) is dict for kind in rule.kinds)
                         and not any((get_origin(kind) or kind) is list and get_args(kind) != (str,)
                                     for kind in rule.kinds)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The inside of the nested fields that show, export and the dashboard read (they index these keys). A shape is
# a kind (NUMBER, WHOLE, TEXT, FLAG), Nullable(shape), an Obj (required and optional keys), EachValue (a mapping of
# any keys to one shape) or ListOf. A field whose inside does not fit is damage, shown as such, never a traceback.
NUMBER, WHOLE, TEXT, FLAG = "a finite number", "a whole number", "text", "true, false or null"


@dataclass(frozen=True)
class Obj:
    required: dict[str, Any]
    optional: dict[str, Any]


@dataclass(frozen=True)
class EachValue:
    shape: Any


@dataclass(frozen=True)
class ListOf:
    shape: Any


@dataclass(frozen=True)
class Nullable:
    shape: Any


SHAPES: dict[str, Any] = {
    "inv_agreement": EachValue(Obj({"same_neighbour": NUMBER, "sample": WHOLE}, {})),
    "flag_details": ListOf(Obj({}, {"name": TEXT, "rule": TEXT, "reasons": ListOf(TEXT)})),
    "checks": Obj({"summary": TEXT, "n": WHOLE, "eps_s": NUMBER,
                   "results": ListOf(Obj({"passed": FLAG, "label": TEXT, "message": TEXT}, {}))}, {}),
    "autoattack": Obj({"version": TEXT, "eps": NUMBER, "n": WHOLE, "robust": WHOLE, "percent": NUMBER},
                      {"broken_by": Nullable(EachValue(WHOLE)), "clean_wrong": Nullable(WHOLE)}),
    "pgd": Obj({}, {"steps": Nullable(WHOLE), "eps": Nullable(NUMBER), "alpha": Nullable(NUMBER)}),
}


def _fits(value: Any, shape: Any) -> bool:
    if isinstance(shape, Nullable):
        return value is None or _fits(value, shape.shape)
    if isinstance(shape, Obj):
        return isinstance(value, dict) and all(k in value and _fits(value[k], s) for k, s in shape.required.items()) \
            and all(_fits(value[k], s) for k, s in shape.optional.items() if k in value)
    if isinstance(shape, EachValue):
        return isinstance(value, dict) and all(_fits(v, shape.shape) for v in value.values())
    if isinstance(shape, ListOf):
        return isinstance(value, list) and all(_fits(v, shape.shape) for v in value)
    return {NUMBER: _finite, WHOLE: _is_int, TEXT: lambda v: isinstance(v, str),
            FLAG: lambda v: v is None or isinstance(v, bool)}[shape](value)


def _shape_problem(key: str, value: Any) -> str | None:
    """Why a nested field's inside is not what amltui wrote (an empty or null field is fine), or None."""
    if key not in SHAPES or value in (None, {}, []) or _fits(value, SHAPES[key]):
        return None
    text = repr(value)
    return f"{key} is {text[:80] + '…' if len(text) > 80 else text}, which is not what amltui writes there"


def record_problems(record: dict[str, Any]) -> list[str]:
    """What is wrong with the fields of a record (empty when nothing is); a missing status is wrong too."""
    problems: list[str] = []
    for key, rule in RULES.items():
        if key in record or key == "status":
            found = rule.problems(key, record.get(key))
            shape = None if found else _shape_problem(key, record.get(key))
            problems += found + ([shape] if shape else [])
    return problems


def folder_problem(runs_dir: Path, run_id: str, *, read: bool = True) -> str | None:
    """Why the run's folder cannot back its record (gone, a symlink, run.json unreadable), or None.

    ``read=False`` only looks at the folder itself (for the dashboard, which polls often).
    """
    folder = Path(runs_dir) / run_id
    if folder.is_symlink():
        return f"its folder {folder} is a symbolic link (amltui only uses real run folders)"
    if not folder.is_dir():
        return f"its folder {folder} is missing"
    if not read:
        return None
    try:
        data = read_json(folder / "run.json")
    except (OSError, ValueError) as exc:
        return f"its run.json is unreadable ({exc})"
    if not isinstance(data, dict):
        return f"its run.json holds a JSON {type(data).__name__}, not an object"
    if data.get("id") != run_id:
        return f"its run.json names another run ({data.get('id')!r})"
    return None


def _safe_copy(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every mistyped field replaced by a value of the right type (empty, or its text)."""
    safe = {key: RULES[key].safe(value) if key in RULES else value for key, value in record.items()}
    for key in SHAPES:
        if key in safe and _shape_problem(key, safe[key]):
            safe[key] = [] if key == "flag_details" else None
    safe["metrics"] = RULES["metrics"].safe(record.get("metrics"))
    return safe


def inspect(record: dict[str, Any], runs_dir: Path | None = None, *, read_folder: bool = True) -> dict[str, Any]:
    """A record safe to show and count: a damaged one gets status "damaged", the reason in ``damaged`` and
    ``error``, the status it claimed in ``stored_status``, and no metric that is not a finite number.

    With ``runs_dir`` the run folder is checked too (missing, a symlink, run.json unreadable unless
    ``read_folder`` is false).
    """
    problems = record_problems(record)
    if runs_dir is not None and isinstance(record.get("id"), str):
        where = folder_problem(runs_dir, record["id"], read=read_folder)
        if where:
            problems.insert(0, where)
    if record.get(DAMAGED) and not problems:  # marked by `store rebuild`
        problems.append(str(record[DAMAGED]))
    if not problems:
        return record
    safe = _safe_copy(record)
    reason = "; ".join(problems)
    safe.update(status=DAMAGED, stored_status=record.get("status"), damaged=reason, error=reason)
    return safe


def inspect_all(records: Iterable[dict[str, Any]], runs_dir: Path | None = None) -> list[dict[str, Any]]:
    return [inspect(r, runs_dir) for r in records]


def damaged(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == DAMAGED]


def unindexed_folders(runs_dir: Path, known: Iterable[str]) -> list[str]:
    """Names of folders holding a run.json that the index does not list (the index lost them)."""
    ids = set(known)
    try:
        entries = sorted(Path(runs_dir).iterdir())
    except OSError:
        return []
    return [p.name for p in entries if p.name not in ids and not p.is_symlink() and (p / "run.json").is_file()]


def field_of(record: dict[str, Any], key: str) -> Any:
    """A record field, or a config value of the run (records carry their resolved config)."""
    if key in record:
        return record[key]
    return (record.get("config") or {}).get(key)
