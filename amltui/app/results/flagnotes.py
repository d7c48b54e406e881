"""Flags and model selection in tables: which cells to mark and the footnotes that say why (torch-free).

A row whose runs carry a flag (core/flags.py; e.g. ``gradient_masking``) gets its A_SA cell marked: FGSM
accuracy is the number a masked gradient inflates; ``at_chance`` marks A_orig. The footnote names the flagged
runs, each flag's rule and the numbers that tripped it.
"""

from __future__ import annotations

from typing import Any

from core.flags import AT_CHANCE

MARK = "⚠"
MARKED_METRIC = "A_SA"
# The cell a flag casts doubt on, where it is not A_SA: a model at chance learned nothing (core/flags.py).
FLAG_METRICS = {AT_CHANCE: "A_orig"}


def flagged_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("flags")]


def marked(runs: list[dict[str, Any]], metric: str) -> bool:
    """Whether a table cell of ``metric`` over these runs carries the flag mark."""
    return any(FLAG_METRICS.get(str(f), MARKED_METRIC) == metric for r in runs for f in r.get("flags") or [])


# The rule of each sanity check (core/checks.py), for records whose check results carry no label.
CHECK_RULES = {
    "check_large_eps": "(a) PGD at ε=0.5 leaves at most 10% accuracy",
    "check_more_iterations": "(b) 10× PGD steps or 5 restarts do not raise accuracy",
    "check_black_box": "(c) the black-box Square attack is not stronger than white-box PGD/FGSM",
    "check_fgsm_gt_pgd": "(d) FGSM accuracy is not far above PGD's",
    "check_non_monotone": "(e) accuracy does not rise with ε",
}


def flag_explanations(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(flag, rule, reason) for each flag of a run: training-time flags from ``flag_details``, sanity-check
    flags from the record's ``checks`` results; a flag recorded without either says so instead of a blank."""
    out = []
    details = {d.get("name"): d for d in run.get("flag_details") or [] if isinstance(d, dict)}
    checks = {c.get("flag"): c for c in (run.get("checks") or {}).get("results") or [] if isinstance(c, dict)}
    for name in run.get("flags") or []:
        if name in details:
            d = details[name]
            rule, reason = str(d.get("rule") or ""), "; ".join(str(x) for x in d.get("reasons") or [])
        elif name in checks:
            c = checks[name]
            rule = CHECK_RULES.get(name) or str(c.get("label") or "")
            reason = str(c.get("message") or "")
        else:
            rule, reason = CHECK_RULES.get(name, ""), ""
        out.append((name, rule or "rule not recorded", reason or "no numbers recorded (flagged by an older amltui)"))
    return out


def footnotes(rows: list[Any]) -> list[str]:
    """One line per row with flagged runs: how many of its runs, and for each run each flag's rule and reason."""
    lines = []
    for row in rows:
        flagged = flagged_runs(row.runs)
        if not flagged:
            continue
        names = sorted({f for r in flagged for f in r["flags"]})
        reasons = [f"{r['id']}: " + "; ".join(f"{name} — rule: {rule}; here: {reason}"
                                              for name, rule, reason in flag_explanations(r))
                   for r in flagged]
        lines.append(f"{MARK} {row.variant} / {row.dataset} / {row.setting}: {len(flagged)} of {len(row.runs)} "
                     f"runs flagged {', '.join(names)}. " + " ".join(f"{text}." for text in reasons))
    return lines


def selection_note(records: list[dict[str, Any]]) -> str | None:
    """Which rule chose the evaluated weights, when any run did not simply keep its last epoch."""
    chosen = [r for r in records if r.get("select", "last") != "last"]
    if not chosen:
        return None
    epochs = ", ".join(f"{r['id']}: epoch {r.get('selected_epoch', '?')}/{r.get('epochs', '?')}" for r in chosen)
    return ("Model selection: select=best_pgd — the evaluated weights are those of the epoch with the best PGD "
            f"accuracy on a hold-out carved from the training data (never the test split); {epochs}. "
            "All other runs: the last epoch.")
