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

from amltui.app.fsutil import FileLock, atomic_write_json, make_folder, read_json
from amltui.app.results.curves import aa_spec, aa_version_of, attack_label, curve_points, pgd_spec
from amltui.app.runs.folders import RunDir, run_dir
from amltui.app.runs.records import now
from amltui.app.runs.store import Store, update_record
from amltui.app.science.events import Listener
from amltui.app.science.loading import load_run_data, load_run_model
from core.aa_spec import aa_components_of
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

    def is_cached(self, spec: str, eps: float) -> bool:
        return self.cached("clean" if eps == 0 else spec, eps) is not None

    def measure(self, spec: str, eps: float) -> AttackResult:
        if eps == 0:
            spec = "clean"  # every attack at ε = 0 is the clean accuracy: one measurement
        hit = self.cached(spec, eps)
        if hit is not None:
            return hit
        result = self._compute(spec, eps)
        make_folder(self.cache_file.parent)
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
            return rob.autoattack(model, x, y, eps, version=aa_version_of(spec), seed=self.config.seed,
                                  batch_size=bs, **kw)
        if spec.startswith("square-"):
            return rob.square(model, x, y, eps, n_queries=int(spec[7:]), seed=self.config.seed, batch_size=bs, **kw)
        raise ValueError(f"unknown attack spec {spec!r}")


def open_evaluator(store: Store, run_id: str, *, device: str | None = None, subset: int | None = None,
                   listener: Listener | None = None) -> Evaluator:
    loaded = load_run_model(store, run_id, device)
    data = load_run_data(loaded.config)
    return Evaluator(loaded.rd, loaded.config, loaded.model, data.test, subset=subset, listener=listener)


def _update_record(store: Store, rd: RunDir, change: dict[str, Any]) -> dict[str, Any]:
    """Merge ``change`` into the record through the one locked read-modify-write (amltui/app/runs/store.py
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
    result = ev.measure(aa_spec(cfg.aa_version), cfg.eps_s)
    _, comps = aa_components_of(cfg.aa_version)
    info = {"version": cfg.aa_version, "components": [c.to_dict() for c in comps],
            "eps": cfg.eps_s, "n": result.n, "robust": result.correct,
            "percent": round(result.percent, 4), "clean_wrong": result.clean_wrong, "broken_by": result.broken,
            "max_linf": result.max_linf, "seconds": round(result.seconds, 2), "seconds_by": result.seconds_by,
            "checkpoint": ev.ckpt, "subset": ev.subset_key, "library": _torchattacks_version()}
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
    """The curve's ε grid and attacks. AutoAttack (``autoattack``) runs only at ``aa_eps`` (default: ε_s and 0,
    the clean point), never at the whole grid unasked: at full strength each point can take an hour on a CPU."""

    grid: list[float]
    pgd_steps: int
    pgd_restarts: int = 1
    autoattack: bool = False
    aa_eps: list[float] | None = None


def curve_specs(cfg: RunConfig, spec: CurveSpec) -> list[str]:
    specs = ["fgsm", pgd_spec(spec.pgd_steps, spec.pgd_restarts, cfg.seed)]
    return specs + ([aa_spec(cfg.aa_version)] if spec.autoattack else [])


def curve_measurements(cfg: RunConfig, spec: CurveSpec) -> list[tuple[str, float]]:
    """Every (attack, ε) the curve measures, in order: FGSM and PGD on the grid, AutoAttack at its ε values."""
    aa_eps = set(spec.aa_eps if spec.aa_eps is not None else [0.0, cfg.eps_s])
    return [(attack, e) for attack in curve_specs(cfg, spec) for e in spec.grid
            if not attack.startswith("aa-") or e in aa_eps]


def compute_curve(ev: Evaluator, spec: CurveSpec) -> dict[str, Any]:
    """Accuracy vs ε for each attack; <run>/curve.json (null where an attack was not run at that ε, as
    AutoAttack off its ``aa_eps``). ε = 0 is the clean accuracy for every attack."""
    measured = {(a, e): round(ev.measure(a, e).percent, 4) for a, e in curve_measurements(ev.config, spec)}
    curves = {a: [measured.get((a, e)) for e in spec.grid] for a in curve_specs(ev.config, spec)}
    data = {"run": ev.rd.id, "n": ev.n, "subset": ev.subset_key, "eps_s": ev.config.eps_s, "grid": spec.grid,
            "curves": curves, "labels": {a: attack_label(a) for a in curves}, "checkpoint": ev.ckpt,
            "written": now()}
    atomic_write_json(ev.rd.path / "curve.json", data)
    return data


# ---- sanity checks -------------------------------------------------------------------------------------
RESTARTS = 5
STEPS_FACTOR = 10
SQUARE_QUERIES = 5000


def checks_measurements(cfg: RunConfig, spec: CurveSpec) -> list[tuple[str, float]]:
    """Every (attack, ε) that measure_checks needs besides the curve."""
    steps, eps = spec.pgd_steps, cfg.eps_s
    return [("fgsm", eps), (pgd_spec(steps, 1, cfg.seed), eps), (pgd_spec(steps * STEPS_FACTOR, 1, cfg.seed), eps),
            (pgd_spec(steps, RESTARTS, cfg.seed + 1000), eps), (f"square-{SQUARE_QUERIES}", eps),
            (pgd_spec(steps, 1, cfg.seed), LARGE_EPS)]


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
        curves={curve["labels"][a]: curve_points(curve, a) for a in curve["curves"]},
    )
    results = run_checks(m, thresholds or Thresholds(fgsm_gap=cfg.mask_gap))  # one threshold: core/checks.py
    return {"summary": summary_line(results), "n": ev.n, "eps_s": eps, "pgd_steps": steps,
            "results": [r.to_dict() for r in results], "checkpoint": ev.ckpt, "checked": now(),
            "_results": results}


def measure_cheap_checks(ev: Evaluator, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Checks (a) large ε, (c) black box and (d) FGSM vs PGD at ε_s (cached), as `reproduce` runs them by default.

    These catch a model that masks PGD as well as FGSM (scaled logits, quantized input: PGD accuracy stays high,
    but not at ε = 0.5 and not against Square), which the gradient-masking flag cannot see. (b) and (e) need 10×
    PGD, restarts and a curve: `amltui eval RUN --checks` runs all of them.
    """
    cfg, eps = ev.config, ev.config.eps_s
    pgd = pgd_spec(cfg.pgd_steps, 1, cfg.seed)
    m = Measurements(n=ev.n, eps_s=eps, fgsm=ev.measure("fgsm", eps).percent, pgd=ev.measure(pgd, eps).percent,
                     square=ev.measure(f"square-{SQUARE_QUERIES}", eps).percent,
                     large_eps=ev.measure(pgd, LARGE_EPS).percent)
    results = run_checks(m, thresholds or Thresholds(fgsm_gap=cfg.mask_gap))
    return {"summary": summary_line(results), "n": ev.n, "eps_s": eps, "pgd_steps": cfg.pgd_steps,
            "scope": "cheap", "results": [r.to_dict() for r in results], "checkpoint": ev.ckpt, "checked": now(),
            "_results": results}


def record_cheap_checks(store: Store, ev: Evaluator) -> dict[str, Any]:
    checks = measure_cheap_checks(ev)
    results = checks.pop("_results")
    return _update_record(store, ev.rd, {"checks": checks, "flags": lambda old: merge_flags(old, results)})


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


# ---- how long an evaluation will take ------------------------------------------------------------------
#: Ask before an evaluation projected over this many seconds (`eval --yes` skips the question).
CONFIRM_OVER_S = 600.0
FORWARD = 0.35  # a forward pass, in forward+backward passes (timed ~1/3 on CPU for the paper's net)


def passes_per_image(spec: str) -> list[float]:
    """Forward+backward passes per image of one measurement, per stage; an AutoAttack stage per component.

    Upper bounds: an iterative attack runs all its steps (APGD stops early only in its restarts), Square spends
    all its queries (it stops early on fooled images), FAB-T costs ~2 passes per iteration and target (a
    gradient of the logit difference and a forward of its step), untargeted FAB ~10 (a gradient per class).
    """
    if spec == "clean":
        return [FORWARD]
    if spec == "fgsm":
        return [1 + FORWARD]
    if spec.startswith("pgd-"):
        steps, rest = spec[4:].split("x", 1)
        return [int(steps) * int(rest.split("-s", 1)[0]) + FORWARD]
    if spec.startswith("square-"):
        return [int(spec[7:]) * FORWARD]
    if spec.startswith("aa-"):
        _, comps = aa_components_of(aa_version_of(spec))
        per = {"square": FORWARD, "fab": 10.0, "fab-t": 2.0}
        return [c.steps * c.restarts * c.eot * max(1, c.targets) * per.get(c.attack, 1.0) + FORWARD for c in comps]
    raise ValueError(f"unknown attack spec {spec!r}")


def seconds_per_pass(ev: Evaluator, repeats: int = 5) -> float:
    """Seconds of one forward+backward pass per image on this model and device, timed on a small batch: the
    median of ``repeats`` after a warm-up (the median, not the best, so a machine busy with other work counts)."""
    import statistics
    import time

    import torch

    from core.attacks.base import eval_mode
    from core.data import to_float

    device = next(ev.model.parameters()).device
    x = ev.images[:64].to(device)
    x = to_float(x) if x.dtype == torch.uint8 else x.float()
    y = ev.labels[:64].to(device)
    times = []
    with eval_mode(ev.model):
        for i in range(repeats + 1):
            started = time.perf_counter()
            xr = x.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(ev.model(xr), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - started)
    ev.model.zero_grad(set_to_none=True)
    return statistics.median(times) / max(1, len(y))


@dataclass
class Estimate:
    seconds: float
    pending: list[tuple[str, float, float]]  # (spec, ε, seconds) of each measurement not cached

    def text(self, n: int) -> str:
        slowest = max(self.pending, key=lambda p: p[2]) if self.pending else None
        out = f"about {fmt_duration(self.seconds)} for {len(self.pending)} measurement(s) on n={n} images"
        if slowest:
            out += f" (slowest: {attack_label(slowest[0])} at ε {slowest[1]:g}, ~{fmt_duration(slowest[2])})"
        return out


def fmt_duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def estimate(ev: Evaluator, measurements: list[tuple[str, float]], per_pass: float | None = None) -> Estimate:
    """Projected seconds of the measurements not in the cache: a cost model (passes per image per attack, see
    passes_per_image) times one pass's measured cost. For AutoAttack, stages after the first run on the share of
    images that PGD or FGSM at that ε left robust when the cache knows it (else on all: an upper bound)."""
    todo = []
    for spec, eps in dict.fromkeys(measurements):
        if eps == 0:
            spec = "clean"
        if (spec, eps) not in todo and not ev.is_cached(spec, eps):
            todo.append((spec, eps))
    if not todo:
        return Estimate(0.0, [])
    unit = per_pass if per_pass is not None else seconds_per_pass(ev)
    pending = []
    for spec, eps in todo:
        first, *rest = passes_per_image(spec)
        survive = _robust_share(ev, eps) if spec.startswith("aa-") else 1.0
        pending.append((spec, eps, ev.n * unit * (first + survive * sum(rest))))
    return Estimate(sum(p[2] for p in pending), pending)


def _robust_share(ev: Evaluator, eps: float) -> float:
    known = [hit.percent / 100 for spec in (pgd_spec(ev.config.pgd_steps, 1, ev.config.seed), "fgsm")
             if (hit := ev.cached(spec, eps)) is not None]
    return min(known) if known else 1.0
