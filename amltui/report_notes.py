"""Notes under a results table: the test images behind each metric, and the runs sanity checks flagged."""

from __future__ import annotations

from typing import Any

from core.metrics import METRIC_LABELS


def images_line(runs: list[dict[str, Any]], metrics: list[str]) -> str:
    """'Test images per run: A_orig n=1000; …; A_AA n=500 (AutoAttack standard)' (sizes differing across runs
    are listed as a range)."""
    parts = []
    for m in metrics:
        sizes = sorted({int(r["metrics_n"][m]) for r in runs if m in (r.get("metrics_n") or {})})
        if not sizes:
            continue
        size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
        extra = ""
        if m == "A_AA":
            versions = sorted({str((r.get("autoattack") or {}).get("version")) for r in runs if r.get("autoattack")})
            extra = f" (AutoAttack {', '.join(versions)}, torchattacks)" if versions else ""
        parts.append(f"{METRIC_LABELS.get(m, m)} n={size}{extra}")
    return "Test images per run: " + "; ".join(parts) + "." if parts else ""


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
            line += f" (n={checks['n']})"
        others = [f for f in flags if not f.startswith("check_")]
        if others:
            line += f"; other flags: {', '.join(others)}"
        out.append(line)
    return out
