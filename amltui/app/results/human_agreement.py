"""Agreement with Tramèr et al.'s human labels, split where humans changed the label and where they did not.

A run's ``human_sets`` record (core/human_sets.py scores it, `amltui eval RUN --human-sets` stores it) holds, per
set, the agreement over all examples (acc_human) and, when the original MNIST labels were available, the agreement
on the label-changing examples (follow_human) and on the others (agree_unchanged). The overall number alone cannot
be read: a model that ignores every perturbation agrees on the unchanged examples and disagrees on the changed
ones. Both front ends and the reports format it here (torch-free).
"""

from __future__ import annotations

from typing import Any

HEADLINE_SET = "linf-eps0.3-automated"  # the set the reports summarize (Tramèr et al.'s automated L∞ ε = 0.3)


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.1f}"


def split_text(result: dict[str, Any]) -> str:
    """One set's agreement: all, changed and unchanged, each with its n; the split only where it was scored."""
    text = f"{_pct(result.get('acc_human'))} all (n={result.get('n', '?')})"
    if not result.get("n_changed") and not result.get("n_unchanged"):
        return text + "; changed/unchanged not split (no original labels: --mnist-dir)"
    text += f"; {_pct(result.get('follow_human'))} changed (n={result.get('n_changed', 0)})"
    if "agree_unchanged" in result:
        text += f", {_pct(result.get('agree_unchanged'))} unchanged (n={result.get('n_unchanged', 0)})"
    else:  # scored before the split existed: re-run `eval --human-sets`
        text += ", unchanged not scored (re-run `amltui eval RUN --human-sets`)"
    return text


def runs_text(records: list[dict[str, Any]], name: str = HEADLINE_SET) -> str:
    """The mean over runs of each part of the split for one set (the runs scored on it), with the run count."""
    results = [r["human_sets"]["sets"][name] for r in records
               if isinstance(r.get("human_sets"), dict) and name in (r["human_sets"].get("sets") or {})]
    if not results:
        return "not evaluated"
    parts = []
    for key, label, n_key in (("acc_human", "all", "n"), ("follow_human", "changed", "n_changed"),
                              ("agree_unchanged", "unchanged", "n_unchanged")):
        values = [r[key] for r in results if isinstance(r.get(key), int | float)]
        if len(values) == len(results):  # a part some runs lack is left out rather than averaged over fewer runs
            sizes = sorted({str(r.get(n_key, "?")) for r in results})
            parts.append(f"{sum(values) / len(values):.1f} {label} (n={'/'.join(sizes)})")
    return "; ".join(parts) + f" — mean of {len(results)} run{'s' if len(results) != 1 else ''}"
