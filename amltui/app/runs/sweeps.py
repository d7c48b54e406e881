"""Sweeps: a grid of config values × variants × seeds queued as one named batch (docs/cli.md, "Sweeps").

A grid item is ``KEY=VALUES`` where VALUES is a comma-separated list (``lambda_ia=0.25,0.5,1``) or a range:
``START:STOP:COUNT`` / ``START:STOP:lin:COUNT`` (COUNT evenly spaced values, both ends included),
``START:STOP:log:COUNT`` (evenly spaced in log10, rounded to 3 significant digits) or ``START:STOP:step:STEP``
(START, START+STEP, … up to STOP inclusive). Lin and step ranges are computed in decimal arithmetic, so
``0:1:step:0.1`` gives 0.3, never 0.30000000000000004. Every value goes through the key's own validation
(core/config.py) before anything is queued.

A sweep's name is recorded in each run it queues (record field ``sweep``) and, with its grid and every run id
— reused identical runs included — in a manifest under ``<runs>/reports/sweeps/NAME.json``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from amltui.app.errors import did_you_mean
from amltui.app.fsutil import atomic_write_json, read_json
from amltui.app.runs.store import validate_run_id
from core.config import ConfigError, RunConfig, coerce, field_names

CONFIRM_ABOVE = 50  # runs; more than this asks for confirmation (--yes skips it)
LOG_DIGITS = 3  # significant digits of log-spaced values
# Keys with their own option: a grid over them would clash with --variants / --seeds.
OWN_OPTION = {"variant": "--variants", "seed": "--seeds", "overrides": "--set"}
RANGE_HELP = ("START:STOP:COUNT, START:STOP:lin:COUNT, START:STOP:log:COUNT or START:STOP:step:STEP "
              "(e.g. lr=1e-4:1e-2:log:5, lambda_ia=0:1:step:0.25)")

GRID_HELP = ("Sweep a config key: --grid KEY=V1,V2,… or a range " + RANGE_HELP + "; repeatable (the cross "
             "product of all grids × variants × seeds is queued).")

Grid = dict[str, list[Any]]


class GridError(ValueError):
    """A grid item names an unknown key or a value the key cannot take; the message says what would."""


def check_key(key: str) -> str:
    if key in OWN_OPTION:
        raise GridError(f"--grid {key}: use {OWN_OPTION[key]} for {key} (several values are crossed there too)")
    keys = [k for k in field_names() if k != "overrides"]
    if key not in keys:
        raise GridError(f"--grid: unknown config key {key!r}; {did_you_mean(key, keys)}"
                        "`amltui config-keys` lists the keys with their types and ranges")
    return key


def tidy(value: float, digits: int = 12) -> float:
    """A float without binary noise: 0.30000000000000004 → 0.3 (12 significant digits)."""
    return float(f"{value:.{digits}g}") if value else 0.0


_ASCII_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _decimal(text: str, what: str) -> Decimal:
    try:
        if not _ASCII_NUMBER.fullmatch(text.strip()):  # Decimal() also reads '٣' and '1_000'
            raise InvalidOperation
        number = Decimal(text.strip())
    except InvalidOperation:
        raise GridError(f"{what} {text!r} is not a number; ranges are {RANGE_HELP}") from None
    if not number.is_finite():
        raise GridError(f"{what} {text!r} is not a finite number")
    return number


MAX_VALUES = 10_000  # values of one range (a launch is capped as a whole too: service/launch.py MAX_RUNS)


def _count(text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) < 2:
        raise GridError(f"range count {text!r}: give a whole number of values, at least 2")
    if int(text) > MAX_VALUES:
        raise GridError(f"range count {text!r}: at most {MAX_VALUES} values")
    return int(text)


def expand_range(text: str) -> list[float]:
    """``START:STOP[:lin|log|step]:N`` → the values, exactly rounded (see the module docstring)."""
    parts = text.split(":")
    if len(parts) == 3 and parts[2] not in ("lin", "log", "step"):
        parts.insert(2, "lin")
    if len(parts) != 4 or parts[2] not in ("lin", "log", "step"):
        raise GridError(f"range {text!r} is not one of {RANGE_HELP}")
    start, stop = _decimal(parts[0], "range start"), _decimal(parts[1], "range stop")
    kind = parts[2]
    if kind == "step":
        step = _decimal(parts[3], "range step")
        if step <= 0 or stop < start:
            raise GridError(f"range {text!r}: a step range needs STEP > 0 and STOP ≥ START")
        n = int((stop - start) / step) + 1
        if n > MAX_VALUES:
            raise GridError(f"range {text!r} has {n} values; make the step larger")
        return [float(start + i * step) for i in range(n)]
    n = _count(parts[3])
    if kind == "lin":
        return [float(start + (stop - start) * i / (n - 1)) for i in range(n)]
    if start <= 0 or stop <= 0:
        raise GridError(f"range {text!r}: a log range needs START and STOP > 0")
    lo, hi = math.log10(start), math.log10(stop)
    return [tidy(10 ** (lo + (hi - lo) * i / (n - 1)), LOG_DIGITS) for i in range(n)]


def parse_values(key: str, text: str) -> list[Any]:
    """The typed, validated values of one grid item (a list or a range); GridError naming the key's rule."""
    text = text.strip()
    if not text:
        raise GridError(f"--grid {key}=: no values; give a list (a,b,c) or a range ({RANGE_HELP})")
    raw: list[Any] = expand_range(text) if ":" in text else [v.strip() for v in text.split(",")]
    values = []
    for item in raw:
        try:
            value = coerce(key, item)
        except ConfigError as exc:
            raise GridError(f"--grid {key}: {exc}") from None
        values.append(tidy(value) if isinstance(value, float) else value)
    if len(set(map(format_value, values))) != len(values):
        raise GridError(f"--grid {key}={text}: a value is given twice")
    return values


def parse_grid(items: list[str] | None) -> Grid:
    """``["lambda_ia=0.25,0.5", "eps_s=0.1:0.2:2"]`` → ``{"lambda_ia": [0.25, 0.5], "eps_s": [0.1, 0.2]}``."""
    grid: Grid = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise GridError(f"--grid {item!r} is not of the form KEY=V1,V2,… or KEY={RANGE_HELP}")
        check_key(key)
        if key in grid:
            raise GridError(f"--grid {key} is given twice; put all its values in one --grid")
        grid[key] = parse_values(key, text)
    return grid


def count_points(items: list[str] | None) -> int:
    """How many grid points the --grid items make (1 without a grid), without building them."""
    return math.prod(len(values) for values in parse_grid(items).values())


def format_value(value: Any) -> str:
    """A grid value as written in an override, a label or a run id: 0.25, 0.0001, 5, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{tidy(value):g}" if abs(value) >= 1e-4 or value == 0 else f"{tidy(value):.12g}"
    return str(value)


def points(grid: Grid) -> list[list[str]]:
    """The cross product as lists of ``key=value`` overrides, in the grid's order (the last key varies fastest)."""
    keys = list(grid)
    return [[f"{k}={format_value(v)}" for k, v in zip(keys, combo, strict=True)]
            for combo in itertools.product(*(grid[k] for k in keys))]


def check_no_clash(grid: Grid, overrides: list[str] | None) -> None:
    """A key both in --set and --grid would be silently overwritten: refuse it."""
    for item in overrides or []:
        key = item.partition("=")[0].strip()
        if key in grid:
            raise GridError(f"{key} is both in --set and --grid; keep it in --grid only")


def sweep_configs(variants: list[str], seeds: list[int], grid: Grid,
                  resolve: Callable[[str, int, list[str]], RunConfig]) -> list[RunConfig]:
    """Variants × grid points × seeds, each resolved by ``resolve(variant, seed, point_overrides)``.

    A point a variant refuses (e.g. ml_sa_ia with lambda_ia=0) is an error naming both, before anything is queued.
    """
    configs = []
    for variant in variants:
        for point in points(grid) or [[]]:
            for seed in seeds:
                try:
                    configs.append(resolve(variant, seed, point))
                except ConfigError as exc:
                    if not point:
                        raise  # no grid: the config's own message, as `run` always gave it
                    raise GridError(f"variant {variant} at grid point {', '.join(point)}: {exc}") from None
    return configs


def default_name(grid: Grid, now: float | None = None) -> str:
    """``sweep-lambda_ia-eps_s-20261201-064800``: the swept keys and the local time."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return validate_run_id("-".join(["sweep", *grid, stamp])[:128])


def check_name(name: str) -> str:
    try:
        return validate_run_id(name)
    except ValueError as exc:
        raise GridError(f"--sweep: {str(exc).replace('run id', 'sweep name')}") from None


def describe(grid: Grid, variants: list[str], seeds: list[int]) -> str:
    """``12 runs = 1 variant × 4 points (lambda_ia: 4) × 3 seeds``."""
    n_points = math.prod(len(v) for v in grid.values()) if grid else 1
    total = len(variants) * n_points * len(seeds)
    axes = ", ".join(f"{k}: {len(v)}" for k, v in grid.items())
    return (f"{total} runs = {len(variants)} variant(s) × {n_points} grid point(s) ({axes}) × "
            f"{len(seeds)} seed(s)")


def resolve_sweep(variants: list[str], seeds: list[int], grid_items: list[str] | None, overrides: list[str] | None,
                  name: str | None, resolve: Callable[[str, int, list[str]], RunConfig]
                  ) -> tuple[list[RunConfig], str | None]:
    """The configs of variants × grid points × seeds and the sweep's name (None without --grid or a name)."""
    grid = parse_grid(grid_items)
    check_no_clash(grid, overrides)
    name = check_name(name) if name else (default_name(grid) if grid else None)
    return sweep_configs(variants, seeds, grid, resolve), name



def record(runs_dir: Path, name: str | None, grid_items: list[str] | None, run_ids: list[str]) -> None:
    """Write the sweep's manifest (no-op for a plain `run` without --sweep/--grid)."""
    if name:
        save_manifest(runs_dir, name, parse_grid(grid_items), run_ids)


def needs_confirmation(n_runs: int, threshold: int = CONFIRM_ABOVE) -> bool:
    return n_runs > threshold


# ---- the manifest: what a sweep is, whichever runs were fresh or reused --------------------------------------
def manifest_path(runs_dir: Path, name: str) -> Path:
    return Path(runs_dir) / "reports" / "sweeps" / f"{check_name(name)}.json"


def save_manifest(runs_dir: Path, name: str, grid: Grid, run_ids: list[str]) -> Path:
    """Record (or extend: a second command may add variants or seeds to a sweep) the sweep's grid and runs."""
    path = manifest_path(runs_dir, name)
    old = load_manifest(runs_dir, name) or {}
    keys = list(old.get("keys", [])) + [k for k in grid if k not in old.get("keys", [])]
    ids = list(old.get("runs", [])) + [i for i in run_ids if i not in old.get("runs", [])]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"name": name, "keys": keys, "runs": ids,
                             "grid": {**old.get("grid", {}), **{k: list(v) for k, v in grid.items()}}})
    return path


def load_manifest(runs_dir: Path, name: str) -> dict[str, Any] | None:
    path = manifest_path(runs_dir, name)
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise GridError(f"sweep manifest {path} cannot be read ({exc}); runs tagged sweep={name} still are") from None
    return data if isinstance(data, dict) else None


def sweep_records(records: list[dict[str, Any]], runs_dir: Path, name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(the sweep's runs, its swept keys): runs listed in the manifest or tagged ``sweep=NAME``."""
    manifest = load_manifest(runs_dir, name) or {}
    ids = set(manifest.get("runs", []))
    chosen = [r for r in records if r.get("id") in ids or r.get("sweep") == name]
    if not chosen:
        known = sweep_names(records, runs_dir)
        raise GridError(f"no run belongs to sweep {name!r}; {did_you_mean(name, known)}"
                        f"known sweeps: {', '.join(known) or 'none yet (run … --grid KEY=V1,V2 --sweep NAME)'}")
    return chosen, list(manifest.get("keys", [])) or swept_keys(chosen)


def _manifest_names(runs_dir: Path) -> set[str]:
    folder = Path(runs_dir) / "reports" / "sweeps"
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def swept_keys(records: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between the runs (seed and runtime keys aside): the grid's axes."""
    from core.config import EVAL_ONLY, NON_SCIENTIFIC

    skip = {*NON_SCIENTIFIC, *EVAL_ONLY, "overrides", "variant"}
    configs = [r.get("config") or {} for r in records]
    keys = sorted({k for c in configs for k in c} - skip)
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def sweep_names(records: list[dict[str, Any]], runs_dir: Path) -> list[str]:
    """Every sweep named by a run record or a manifest, sorted."""
    return sorted({str(r["sweep"]) for r in records if r.get("sweep")} | _manifest_names(runs_dir))


def next_sweep(records: list[dict[str, Any]], runs_dir: Path, current: str | None) -> str | None:
    """The dashboard's `s` key: all results → the first sweep → the next → … → all results again."""
    names = sweep_names(records, runs_dir)
    if current not in names:
        return names[0] if names else None
    i = names.index(current) + 1
    return names[i] if i < len(names) else None
