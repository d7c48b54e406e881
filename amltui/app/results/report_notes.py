"""Notes under a results table: which AutoAttack made A_AA, and the runs sanity checks flagged."""

from __future__ import annotations

from typing import Any

from core.aa_spec import describe_aa


def aa_note(runs: list[dict[str, Any]]) -> str:
    """Which AutoAttack produced the A_AA column, with its iterations, ε and n ('' when no run has A_AA):
    'A_AA: AutoAttack standard (APGD-CE/APGD-T/FAB-T 100 it., Square 5000 q., 9 target classes), ε 0.1, n=1000
    (torchattacks components).'"""
    kinds = sorted({describe_aa(r["autoattack"]) for r in runs if isinstance(r.get("autoattack"), dict)})
    return f"A_AA: {'; '.join(kinds)} (torchattacks components)." if kinds else ""


def flagged_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One line per run with sanity-check results: the summary, and the numbers of each failed check."""
    out = []
    for r in sorted(runs, key=lambda r: r["id"]):
        checks = r.get("checks")
        flags = r.get("flags") or []
        if not checks and not flags:
            continue
        line = f"- {r['id']}: "
        line += checks["summary"] if checks else "no sanity checks run"
        if checks:
            scope = "; `reproduce`'s default set" if checks.get("scope") == "cheap" else ""
            line += f" (n={checks['n']}{scope})"
        others = [f for f in flags if not f.startswith("check_")]
        if others:
            line += f"; other flags: {', '.join(others)}"
        out.append(line)
    return out
