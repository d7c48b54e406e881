"""Accuracy-vs-ε curves as measured (``<run>/curve.json``): their attack labels, reading them, and drawing them.

The measurement itself (an attack on a checkpoint) is amltui/app/science/robustness.py's; everything here reads
files and needs no model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amltui.app.fsutil import read_json
from amltui.app.runs.folders import RunDir, run_dir
from amltui.app.runs.store import Store
from core.aa_spec import aa_components_of, aa_signature, short_aa_label


def pgd_spec(steps: int, restarts: int = 1, seed: int = 0) -> str:
    return f"pgd-{steps}x{restarts}-s{seed}"


def aa_spec(version: str) -> str:
    """The measurement key of an AutoAttack version: its name and every count ('aa-standard@apgd-ce:100+…'), so a
    cached or curve entry of the 10-iteration era ('aa-standard') is never read as full strength."""
    return f"aa-{aa_signature(version)}"


def aa_version_of(spec: str) -> str:
    return spec[3:].split("@", 1)[0]


def attack_label(spec: str) -> str:
    """'pgd-40x1-s0' → 'PGD-40', 'aa-standard@…' → 'AA standard 100it' (legends and tables); an 'aa-' key
    without counts is from before full strength and is labelled as the 10-iteration ensemble it was."""
    if spec.startswith("pgd-"):
        steps, rest = spec[4:].split("x", 1)
        restarts = rest.split("-", 1)[0]
        return f"PGD-{steps}" + (f"×{restarts}" if restarts != "1" else "")
    if spec.startswith("aa-"):
        version = aa_version_of(spec)
        if "@" not in spec:
            return short_aa_label({"version": version})
        _, comps = aa_components_of(version)
        return short_aa_label({"version": version, "components": [c.to_dict() for c in comps]})
    if spec.startswith("square-"):
        return f"Square ({spec[7:]} queries)"
    return spec.upper()


def write_curve_png(data: dict[str, Any], path: Path, title: str) -> Path:
    from amltui.app.results.png_figures import robustness_curve_figure

    lines = {data["labels"].get(a, a): [curve_points(data, a)] for a in data["curves"]}
    panel = f"{data.get('n')} test images (stratified)"
    return robustness_curve_figure({panel: lines}, path, title=title, eps_s=data.get("eps_s"))


def curve_points(data: dict[str, Any], attack: str) -> list[tuple[float, float]]:
    """(ε, accuracy) of one attack of curve.json, skipping ε values where it was not run."""
    return [(e, a) for e, a in zip(data["grid"], data["curves"][attack], strict=True) if a is not None]


def read_curve(rd: RunDir) -> dict[str, Any] | None:
    """curve.json, its labels recomputed from the keys (a pre-full-strength AutoAttack line says it was the
    10-iteration ensemble); None if missing or unreadable."""
    path = rd.path / "curve.json"
    try:
        data = read_json(path) if path.exists() else None
    except (OSError, ValueError):
        return None
    if data and isinstance(data.get("labels"), dict):
        data["labels"] = {**data["labels"], **{a: attack_label(a) for a in data.get("curves", {})
                                               if a.startswith("aa-")}}
    return data


def robustness_figure(store: Store, records: list[dict[str, Any]], path: Path) -> Path | None:
    """Every variant's accuracy-vs-ε curve (mean over its seeds, ±1 std band), one panel per attack, from the
    runs' curve.json files; None when no run has a curve (`amltui eval RUN --curve` makes them)."""
    from amltui.app.results.png_figures import robustness_curve_figure

    panels: dict[str, dict[str, list[list[tuple[float, float]]]]] = {}
    eps_s = set()
    for r in sorted(records, key=lambda r: (r.get("variant", ""), r.get("seed", 0))):
        data = read_curve(run_dir(store.runs_dir, r["id"]))
        if not data:
            continue
        eps_s.add(data.get("eps_s"))
        for attack in data["curves"]:
            label = data["labels"].get(attack, attack)
            panels.setdefault(label, {}).setdefault(r.get("variant", "?"), []).append(curve_points(data, attack))
    if not panels:
        return None
    return robustness_curve_figure(panels, path, title="accuracy vs ε per variant (mean over seeds, ±1 std band)",
                                   eps_s=next(iter(eps_s)) if len(eps_s) == 1 else None)
