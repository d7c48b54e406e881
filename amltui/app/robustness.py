"""A run's robustness evaluation: A_AA, accuracy-vs-ε curves and sanity checks, cached in the run folder.

Every measurement is an (attack, ε) on the run's robustness subset (``aa_subset`` stratified test images, seed 0)
and is cached in ``<run>/robustness/cache.json`` under the checkpoint's hash, so a curve, a report or a check
never recomputes what exists, and a resumed (changed) checkpoint never reuses stale numbers. Outputs:
``autoattack.json`` (per-attack breakdown), ``curve.json`` / ``curve.png`` and the record's ``checks`` and
``flags``. See docs/robustness.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amltui.app.fsutil import FileLock, atomic_write_json, read_json
from amltui.app.runs import Listener, RunDir, load_run_data, load_run_model, now, run_dir
from amltui.app.store import Store, update_record
from core.checks import LARGE_EPS, Measurements, Thresholds, merge_flags, run_checks, summary_line
from core.fsio import open_regular

if TYPE_CHECKING:
    import torch

    from core.config import RunConfig
    from core.robustness import AttackResult

CACHE_VERSION = 1
CURVE_ATTACKS = ("fgsm", "pgd")


def checkpoint_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def pgd_spec(steps: int, restarts: int = 1, seed: int = 0) -> str:
    return f"pgd-{steps}x{restarts}-s{seed}"


def attack_label(spec: str) -> str:
    """'pgd-40x1-s0' → 'PGD-40', 'aa-standard' → 'AA standard' (legends and tables)."""
    if spec.startswith("pgd-"):
        steps, rest = spec[4:].split("x", 1)
        restarts = rest.split("-", 1)[0]
        return f"PGD-{steps}" + (f"×{restarts}" if restarts != "1" else "")
    if spec.startswith("aa-"):
        return f"AA {spec[3:]}"
    if spec.startswith("square-"):
        return f"Square ({spec[7:]} queries)"
    return spec.upper()


class Evaluator:
    """Measures (attack spec, ε) on one run's subset, through the cache; emits ``eval`` progress events."""

    def __init__(self, rd: RunDir, config: RunConfig, model: torch.nn.Module, test: Any, *,
                 subset: int | None = None, listener: Listener | None = None) -> None:
        self.rd, self.config, self.model = rd, config, model
        n = subset if subset is not None else config.aa_subset
        split = test if n is None or n >= len(test) else test.subset(n, seed=0, stratified=True)
        self.images, self.labels = split.images, split.labels
        self.n = len(split)
        self.subset_key = f"n{self.n}-of{len(test)}-seed0"
        self.ckpt = checkpoint_hash(rd.checkpoint)
        self.emit = listener or (lambda kind, data: None)
        self.cache_file = rd.path / "robustness" / "cache.json"
        self.computed: list[str] = []  # keys measured now (not from the cache)

    def _key(self, spec: str, eps: float) -> str:
        return f"{self.ckpt}|{self.subset_key}|{spec}|eps={eps:.6g}"

    def _read_cache(self) -> dict[str, Any]:
        try:
            data = read_json(self.cache_file)
        except (OSError, ValueError):
            return {}
        return data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}

    def cached(self, spec: str, eps: float) -> AttackResult | None:
        from core.robustness import AttackResult

        entry = self._read_cache().get(self._key(spec, eps))
        return AttackResult.from_dict(entry) if entry else None

    def measure(self, spec: str, eps: float) -> AttackResult:
        if eps == 0:
            spec = "clean"  # every attack at ε = 0 is the clean accuracy: one measurement
        hit = self.cached(spec, eps)
        if hit is not None:
            return hit
        result = self._compute(spec, eps)
        self.cache_file.parent.mkdir(exist_ok=True)
        with FileLock(self.rd.path / ".lock"):
            entries = self._read_cache()
            entries[self._key(spec, eps)] = {**result.to_dict(), "computed": now()}
            atomic_write_json(self.cache_file, {"version": CACHE_VERSION, "entries": entries})
        self.computed.append(self._key(spec, eps))
        return result

    def _progress(self, what: str, done: int, total: int) -> None:
        self.emit("eval", {"metric": what, "done": done, "total": total})

    def _compute(self, spec: str, eps: float) -> AttackResult:
        from core import robustness as rob

        bs, kw = self.config.eval_batch_size, dict(progress=self._progress)
        x, y, model = self.images, self.labels, self.model
        if spec == "clean":
            return rob.fgsm(model, x, y, 0.0, batch_size=bs, **kw)
        if spec == "fgsm":
            return rob.fgsm(model, x, y, eps, batch_size=bs, **kw)
        if spec.startswith("pgd-"):
            steps, rest = spec[4:].split("x", 1)
            restarts, seed = rest.split("-s", 1)
            return rob.pgd(model, x, y, eps, steps=int(steps), restarts=int(restarts), seed=int(seed),
                           batch_size=bs, **kw)
        if spec.startswith("aa-"):
            return rob.autoattack(model, x, y, eps, version=spec[3:], seed=self.config.seed, batch_size=bs, **kw)
        if spec.startswith("square-"):
            return rob.square(model, x, y, eps, n_queries=int(spec[7:]), seed=self.config.seed, batch_size=bs, **kw)
        raise ValueError(f"unknown attack spec {spec!r}")


def open_evaluator(store: Store, run_id: str, *, device: str | None = None, subset: int | None = None,
                   listener: Listener | None = None) -> Evaluator:
    loaded = load_run_model(store, run_id, device)
    data = load_run_data(loaded.config)
    return Evaluator(loaded.rd, loaded.config, loaded.model, data.test, subset=subset, listener=listener)


def _update_record(store: Store, rd: RunDir, change: dict[str, Any]) -> dict[str, Any]:
    """Merge ``change`` into the record through the one locked read-modify-write (amltui/app/store.py
    update_record): metrics are merged, a callable maps the old value, anything else replaces it."""
    def apply(record: dict[str, Any]) -> None:
        for key, value in change.items():
            if key in ("metrics", "metrics_n"):
                record[key] = {**(record.get(key) or {}), **value}
            elif callable(value):
                record[key] = value(record.get(key))
            else:
                record[key] = value

    updated = update_record(store, rd.path.name, apply)
    if updated is None:
        raise FileNotFoundError(f"run {rd.path.name} is no longer in the index; its evaluation was not recorded")
    return updated


# ---- A_AA ----------------------------------------------------------------------------------------------
def autoattack_record(ev: Evaluator) -> dict[str, Any]:
    """A_AA at ε_s with its per-attack breakdown; also written to <run>/autoattack.json."""
    cfg = ev.config
    spec = f"aa-{cfg.aa_version}"
    result = ev.measure(spec, cfg.eps_s)
    info = {"version": cfg.aa_version, "eps": cfg.eps_s, "n": result.n, "robust": result.correct,
            "percent": round(result.percent, 4), "clean_wrong": result.clean_wrong, "broken_by": result.broken,
            "max_linf": result.max_linf, "seconds": round(result.seconds, 2), "checkpoint": ev.ckpt,
            "subset": ev.subset_key, "library": _torchattacks_version()}
    atomic_write_json(ev.rd.path / "autoattack.json", info)
    return info


def _torchattacks_version() -> str:
    import torchattacks

    return f"torchattacks {torchattacks.__version__}"


def record_autoattack(store: Store, ev: Evaluator) -> dict[str, Any]:
    info = autoattack_record(ev)
    return _update_record(store, ev.rd, {"metrics": {"A_AA": info["percent"]}, "metrics_n": {"A_AA": info["n"]},
                                         "autoattack": info})


# ---- curves --------------------------------------------------------------------------------------------
@dataclass
class CurveSpec:
    grid: list[float]
    pgd_steps: int
    pgd_restarts: int = 1
    autoattack: bool = False


def curve_specs(cfg: RunConfig, spec: CurveSpec) -> list[str]:
    specs = ["fgsm", pgd_spec(spec.pgd_steps, spec.pgd_restarts, cfg.seed)]
    return specs + ([f"aa-{cfg.aa_version}"] if spec.autoattack else [])


def compute_curve(ev: Evaluator, spec: CurveSpec) -> dict[str, Any]:
    """Accuracy vs ε for each attack; <run>/curve.json. ε = 0 is the clean accuracy for every attack."""
    curves: dict[str, list[float]] = {}
    for attack in curve_specs(ev.config, spec):
        curves[attack] = [round(ev.measure(attack, e).percent, 4) for e in spec.grid]
    data = {"run": ev.rd.id, "n": ev.n, "subset": ev.subset_key, "eps_s": ev.config.eps_s, "grid": spec.grid,
            "curves": curves, "labels": {a: attack_label(a) for a in curves}, "checkpoint": ev.ckpt,
            "written": now()}
    atomic_write_json(ev.rd.path / "curve.json", data)
    return data


def write_curve_png(data: dict[str, Any], path: Path, title: str) -> Path:
    from amltui.app.png_figures import robustness_curve_figure

    lines = {data["labels"].get(a, a): [list(zip(data["grid"], accs, strict=True))]
             for a, accs in data["curves"].items()}
    panel = f"{data.get('n')} test images (stratified)"
    return robustness_curve_figure({panel: lines}, path, title=title, eps_s=data.get("eps_s"))


# ---- sanity checks -------------------------------------------------------------------------------------
RESTARTS = 5
STEPS_FACTOR = 10
SQUARE_QUERIES = 5000


def measure_checks(ev: Evaluator, spec: CurveSpec, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Measure what checks (a)–(e) need (cached), run them, return the record's ``checks`` entry."""
    cfg, eps = ev.config, ev.config.eps_s
    steps = spec.pgd_steps
    curve = compute_curve(ev, spec)
    m = Measurements(
        n=ev.n, eps_s=eps,
        fgsm=ev.measure("fgsm", eps).percent,
        pgd=ev.measure(pgd_spec(steps, 1, cfg.seed), eps).percent,
        pgd_more_steps=ev.measure(pgd_spec(steps * STEPS_FACTOR, 1, cfg.seed), eps).percent,
        # fresh random starts (another seed): restarts with the first start reused could never raise accuracy
        pgd_restarts=ev.measure(pgd_spec(steps, RESTARTS, cfg.seed + 1000), eps).percent,
        square=ev.measure(f"square-{SQUARE_QUERIES}", eps).percent,
        large_eps=ev.measure(pgd_spec(steps, 1, cfg.seed), LARGE_EPS).percent,
        curves={curve["labels"][a]: list(zip(curve["grid"], accs, strict=True))
                for a, accs in curve["curves"].items()},
    )
    results = run_checks(m, thresholds or Thresholds())
    return {"summary": summary_line(results), "n": ev.n, "eps_s": eps, "pgd_steps": steps,
            "results": [r.to_dict() for r in results], "checkpoint": ev.ckpt, "checked": now(),
            "_results": results}


def record_checks(store: Store, ev: Evaluator, spec: CurveSpec) -> dict[str, Any]:
    checks = measure_checks(ev, spec)
    results = checks.pop("_results")
    return _update_record(store, ev.rd, {"checks": checks, "flags": lambda old: merge_flags(old, results)})


# ---- runs' own final evaluation ------------------------------------------------------------------------
def autoattack_after_training(store: Store, run_id: str, model: torch.nn.Module, config: RunConfig, test: Any,
                              listener: Listener) -> dict[str, Any]:
    """A_AA for the record of a run that has ``eval_aa`` on (called by the worker after its evaluation)."""
    ev = Evaluator(run_dir(store.runs_dir, run_id), config, model, test, listener=listener)
    return autoattack_record(ev)


def carried_over_aa(rd: RunDir, record: dict[str, Any]) -> dict[str, Any]:
    """A_AA of the record if it was measured on the current checkpoint (a re-evaluation keeps it), else {}."""
    info = record.get("autoattack") or {}
    metrics, counts = record.get("metrics") or {}, record.get("metrics_n") or {}
    if "A_AA" not in metrics or not rd.checkpoint.exists() or info.get("checkpoint") != checkpoint_hash(rd.checkpoint):
        return {}
    return {"A_AA": (metrics["A_AA"], counts.get("A_AA"))}


# ---- terminal rendering --------------------------------------------------------------------------------
CURVE_STYLES = ("cyan", "red", "yellow", "magenta", "green")


def curve_chart(data: dict[str, Any], width: int = 72, height: int = 16) -> list[Any]:
    """The curve of curve.json as braille lines (the dashboard's chart), x = ε."""
    from amltui.termplot.line_chart import Series, render_chart

    series = [Series(data["labels"].get(a, a), list(zip(data["grid"], accs, strict=True)),
                     CURVE_STYLES[i % len(CURVE_STYLES)]) for i, (a, accs) in enumerate(data["curves"].items())]
    return render_chart(f"accuracy % vs ε (n={data.get('n')})", series, width, height, x_name="ε")


def curve_table(data: dict[str, Any]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=f"accuracy % vs ε on {data.get('n')} test images")
    table.add_column("ε", justify="right")
    for a in data["curves"]:
        table.add_column(data["labels"].get(a, a), justify="right")
    for i, e in enumerate(data["grid"]):
        table.add_row(f"{e:g}", *(f"{accs[i]:.2f}" for accs in data["curves"].values()))
    return table


def read_curve(rd: RunDir) -> dict[str, Any] | None:
    path = rd.path / "curve.json"
    try:
        return read_json(path) if path.exists() else None
    except (OSError, ValueError):
        return None


def robustness_figure(store: Store, records: list[dict[str, Any]], path: Path) -> Path | None:
    """Every variant's accuracy-vs-ε curve (mean over its seeds, ±1 std band), one panel per attack, from the
    runs' curve.json files; None when no run has a curve (`amltui eval RUN --curve` makes them)."""
    from amltui.app.png_figures import robustness_curve_figure

    panels: dict[str, dict[str, list[list[tuple[float, float]]]]] = {}
    eps_s = set()
    for r in sorted(records, key=lambda r: (r.get("variant", ""), r.get("seed", 0))):
        data = read_curve(run_dir(store.runs_dir, r["id"]))
        if not data:
            continue
        eps_s.add(data.get("eps_s"))
        for attack, accs in data["curves"].items():
            label = data["labels"].get(attack, attack)
            panels.setdefault(label, {}).setdefault(r.get("variant", "?"), []).append(
                list(zip(data["grid"], accs, strict=True)))
    if not panels:
        return None
    return robustness_curve_figure(panels, path, title="accuracy vs ε per variant (mean over seeds, ±1 std band)",
                                   eps_s=next(iter(eps_s)) if len(eps_s) == 1 else None)
