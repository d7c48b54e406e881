"""Names of AutoAttack versions and components (no torch here: the config validates them cheaply)."""

from __future__ import annotations

#: The attack lists of torchattacks' named AutoAttack versions, in the order torchattacks runs them.
AA_VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
#: Attacks allowed in a custom list (``aa_version=apgd-ce,square``), each with torchattacks' AutoAttack settings.
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


def parse_aa_version(text: str) -> tuple[str, tuple[str, ...]]:
    """'standard' | 'plus' | 'rand' | a list of AA_ATTACKS (',' or '+' separated) → (canonical name, attacks)."""
    text = str(text).strip().lower()
    if text in AA_VERSIONS:
        return text, AA_VERSIONS[text]
    names = tuple(p.strip() for p in text.replace("+", ",").split(",") if p.strip())
    unknown = [n for n in names if n not in AA_ATTACKS]
    if not names or unknown:
        raise ValueError(f"aa_version={text!r}: use one of {', '.join(AA_VERSIONS)} or a comma-separated list of "
                         f"{', '.join(AA_ATTACKS)} (unknown: {', '.join(unknown) or 'empty list'})")
    if len(set(names)) != len(names):
        raise ValueError(f"aa_version={text!r} names an attack twice")
    return "+".join(names), names
