"""AutoAttack versions and their components, with every iteration count (no torch here: the config validates
them cheaply, and the tables describe A_AA from these specs).

Full-strength versions follow Croce & Hein's reference code (``autoattack/autoattack.py``, ``set_version``):
APGD and FAB run 100 iterations, the targeted attacks use the 9 top non-true classes, Square spends 5,000
queries. The ``-fast`` versions are torchattacks 3.5's own ``AutoAttack(version=...)``, which leaves APGD and
FAB at their 10-iteration defaults: kept because they are ~10× cheaper, and always labelled as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Attacks allowed in a custom list (``aa_version=apgd-ce,square`` or with counts, ``apgd-ce:50,square:1000``).
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
TARGETED = ("apgd-t", "fab-t")
FAST_SUFFIX = "-fast"
REFERENCE_ITERATIONS = 100  # APGD, FAB (reference code)
REFERENCE_QUERIES = 5000  # Square (reference code)
TORCHATTACKS_ITERATIONS = 10  # APGD, FAB defaults of torchattacks 3.5, which its AutoAttack keeps
TARGET_CLASSES = 9  # the top non-true classes of a 10-class problem
NAMES = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T", "fab": "FAB", "fab-t": "FAB-T",
         "square": "Square"}


@dataclass(frozen=True)
class Component:
    """One attack of an AutoAttack ensemble: ``steps`` are iterations (queries for Square)."""

    attack: str
    steps: int
    restarts: int = 1
    targets: int = 0
    eot: int = 1

    @property
    def unit(self) -> str:
        return "queries" if self.attack == "square" else "iterations"

    def key(self) -> str:
        """'apgd-t:100x9' — the cache key part: a change of any count is another measurement."""
        text = f"{self.attack}:{self.steps}"
        text += f"x{self.targets}" if self.targets else ""
        text += f"r{self.restarts}" if self.restarts != 1 else ""
        return text + (f"e{self.eot}" if self.eot != 1 else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unit": self.unit}


def _c(attack: str, steps: int | None = None, restarts: int = 1, eot: int = 1) -> Component:
    if steps is None:
        steps = REFERENCE_QUERIES if attack == "square" else REFERENCE_ITERATIONS
    return Component(attack, steps, restarts, TARGET_CLASSES if attack in TARGETED else 0, eot)


#: Croce & Hein's reference versions (L∞).
AA_VERSIONS: dict[str, tuple[Component, ...]] = {
    "standard": (_c("apgd-ce"), _c("apgd-t"), _c("fab-t"), _c("square")),
    "plus": (_c("apgd-ce", restarts=5), _c("apgd-dlr", restarts=5), _c("fab", restarts=5), _c("square"),
             _c("apgd-t"), _c("fab-t")),
    "rand": (_c("apgd-ce", eot=20), _c("apgd-dlr", eot=20)),
}
_T = TORCHATTACKS_ITERATIONS
#: torchattacks' ``AutoAttack(version=name)`` as it builds them (torchattacks/attacks/autoattack.py).
FAST_VERSIONS: dict[str, tuple[Component, ...]] = {
    "standard-fast": (_c("apgd-ce", _T), _c("apgd-t", _T), _c("fab-t", _T), _c("square")),
    "plus-fast": (_c("apgd-ce", _T, 5), _c("apgd-dlr", _T, 5), _c("fab", _T, 5), _c("square"), _c("apgd-t", _T),
                  _c("fab-t", _T)),
    "rand-fast": (_c("apgd-ce", _T, eot=20), _c("apgd-dlr", _T, eot=20)),
}
NAMED = (*AA_VERSIONS, *FAST_VERSIONS)


def _parse_item(item: str) -> Component:
    attack, _, count = item.partition(":")
    attack = attack.strip()
    if attack not in AA_ATTACKS:
        raise ValueError(f"unknown attack {attack!r}")
    if not count:
        return _c(attack)
    if not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"{item!r}: the count after ':' is a positive number of iterations (queries for square)")
    return _c(attack, int(count))


def aa_components_of(text: str) -> tuple[str, tuple[Component, ...]]:
    """Canonical name and components of a version or custom list (default counts: the reference's)."""
    text = str(text).strip().lower()
    if text in AA_VERSIONS:
        return text, AA_VERSIONS[text]
    if text in FAST_VERSIONS:
        return text, FAST_VERSIONS[text]
    items = [p.strip() for p in text.replace("+", ",").split(",") if p.strip()]
    usage = (f"use one of {', '.join(NAMED)} or a comma-separated list of {', '.join(AA_ATTACKS)}, each optionally "
             "with its iterations (queries for square), e.g. apgd-ce:100,square:5000")
    if not items:
        raise ValueError(f"aa_version={text!r}: {usage} (unknown: empty list)")
    try:
        comps = tuple(_parse_item(i) for i in items)
    except ValueError as exc:
        raise ValueError(f"aa_version={text!r}: {usage} ({exc})") from None
    names = [c.attack for c in comps]
    if len(set(names)) != len(names):
        raise ValueError(f"aa_version={text!r} names an attack twice")
    canonical = "+".join(c.attack if c == _c(c.attack) else f"{c.attack}:{c.steps}" for c in comps)
    return canonical, comps


def parse_aa_version(text: str) -> tuple[str, tuple[str, ...]]:
    """A version name or custom list → (canonical name, attack names in run order)."""
    name, comps = aa_components_of(text)
    return name, tuple(c.attack for c in comps)


def aa_signature(version: str) -> str:
    """'standard@apgd-ce:100+apgd-t:100x9+…': names the version and every count (cache keys, curve keys)."""
    name, comps = aa_components_of(version)
    return f"{name}@{'+'.join(c.key() for c in comps)}"


def components_text(comps: tuple[Component, ...] | list[Component]) -> str:
    """'APGD-CE/APGD-T/FAB-T 100 it., Square 5000 q., 9 target classes' (same counts grouped, run order kept)."""
    groups: dict[tuple[str, int, int, int], list[str]] = {}
    for c in comps:
        groups.setdefault((c.unit, c.steps, c.restarts, c.eot), []).append(NAMES.get(c.attack, c.attack))
    parts = []
    for (unit, steps, restarts, eot), names in groups.items():
        part = f"{'/'.join(names)} {steps} {'q.' if unit == 'queries' else 'it.'}"
        part += f" × {restarts} restarts" if restarts > 1 else ""
        parts.append(part + (f", EOT {eot}" if eot > 1 else ""))
    targets = {c.targets for c in comps if c.targets}
    if targets:
        parts.append(f"{'/'.join(map(str, sorted(targets)))} target classes")
    return ", ".join(parts)


def legacy_components(version: str) -> tuple[str, tuple[Component, ...]]:
    """What an A_AA recorded before amltui stored its components ran: torchattacks' 10-iteration settings (its
    named versions, or its attack defaults for a custom list), never the full-strength reference."""
    name = str(version).strip().lower()
    if name in FAST_VERSIONS:
        return name, FAST_VERSIONS[name]
    if name in AA_VERSIONS:
        return name + FAST_SUFFIX, FAST_VERSIONS[name + FAST_SUFFIX]
    try:
        _, comps = aa_components_of(name)
    except ValueError:
        return name, ()
    return name + " (torchattacks defaults)", tuple(_c(c.attack, _T) if c.attack != "square" else c for c in comps)


def aa_info_components(info: dict[str, Any]) -> tuple[str, tuple[Component, ...]]:
    """(version as run, components) of a record's ``autoattack`` entry or an autoattack.json."""
    stored = info.get("components")
    if stored:
        comps = tuple(Component(d["attack"], int(d["steps"]), int(d.get("restarts", 1)), int(d.get("targets", 0)),
                                int(d.get("eot", 1))) for d in stored if isinstance(d, dict))
        return str(info.get("version")), comps
    return legacy_components(str(info.get("version")))


def describe_aa(info: dict[str, Any], *, with_n: bool = True) -> str:
    """'AutoAttack standard (APGD-CE/APGD-T/FAB-T 100 it., Square 5000 q., 9 target classes), ε 0.1, n=1000'."""
    version, comps = aa_info_components(info)
    text = f"AutoAttack {version}" + (f" ({components_text(comps)})" if comps else "")
    if info.get("eps") is not None:
        text += f", ε {float(info['eps']):g}"
    if with_n and info.get("n") is not None:
        text += f", n={info['n']}"
    return text


def short_aa_label(info: dict[str, Any]) -> str:
    """'AA standard 100it' / 'AA standard-fast 10it': a column or legend label that fits a narrow table."""
    version, comps = aa_info_components(info)
    its = sorted({c.steps for c in comps if c.attack != "square"})
    return f"AA {version}" + (f" {'/'.join(map(str, its))}it" if its else "")
