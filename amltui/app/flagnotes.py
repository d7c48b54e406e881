"""Flags and model selection in tables: which cells to mark and the footnotes that say why (torch-free).

A row whose runs carry a flag (core/flags.py; e.g. ``gradient_masking``) gets its A_SA cell marked: FGSM
accuracy is the number a masked gradient inflates. The footnote names the flagged runs and the rule.
"""

from __future__ import annotations

from typing import Any

MARK = "⚠"
MARKED_METRIC = "A_SA"


def flagged_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("flags")]


def footnotes(rows: list[Any]) -> list[str]:
    """One line per row with flagged runs: how many of its runs, which flags, the rule and the numbers."""
    lines = []
    for row in rows:
        flagged = flagged_runs(row.runs)
        if not flagged:
            continue
        names = sorted({f for r in flagged for f in r["flags"]})
        rules = sorted({d.get("rule", "") for r in flagged for d in r.get("flag_details") or [] if d.get("rule")})
        if any(f.startswith("check_") for f in names):
            rules.append("sanity checks, core/checks.py")
        reasons = [f"{r['id']}: " + "; ".join(_reasons(r)) for r in flagged]
        lines.append(f"{MARK} {row.variant} / {row.dataset} / {row.setting}: {len(flagged)} of {len(row.runs)} "
                     f"runs flagged {', '.join(names)} (rule: {' | '.join(rules) or '?'}) — "
                     + "; ".join(reasons))
    return lines


def _reasons(record: dict[str, Any]) -> list[str]:
    """The first reason of each flag rule, then each failed sanity check's message (they have no details)."""
    out = [d.get("reasons", [""])[0] for d in record.get("flag_details") or []]
    results = (record.get("checks") or {}).get("results") or []
    out += [f"{c.get('label')}: {c.get('message')}" for c in results if c.get("passed") is False]
    return out


def selection_note(records: list[dict[str, Any]]) -> str | None:
    """Which rule chose the evaluated weights, when any run did not simply keep its last epoch."""
    chosen = [r for r in records if r.get("select", "last") != "last"]
    if not chosen:
        return None
    epochs = ", ".join(f"{r['id']}: epoch {r.get('selected_epoch', '?')}/{r.get('epochs', '?')}" for r in chosen)
    return ("Model selection: select=best_pgd — the evaluated weights are those of the epoch with the best PGD "
            f"accuracy on a hold-out carved from the training data (never the test split); {epochs}. "
            "All other runs: the last epoch.")
