"""What a finished run's numbers say about the run itself: a model whose clean accuracy is at chance learned
nothing (too few epochs or images, a diverged loss), and every other number of it is meaningless.

One predicate for every front end (the dashboard's runs table and detail; `ls`, the end-of-run table and the
reports may use the same), torch-free.
"""

from __future__ import annotations

from typing import Any

from core.flags import AT_CHANCE, CHANCE_MARGIN

# Every dataset in core/registry.py DATASETS has ten classes (core/data.py NUM_CLASSES; not imported here: torch).
DEFAULT_CLASSES = 10
MARGIN = CHANCE_MARGIN  # the worker's at_chance flag (core/flags.py) and every front end use one threshold
CHANCE_MARK = "⊘"  # after A_orig in narrow tables


def chance_level(record: dict[str, Any]) -> float:
    """Chance accuracy in percent: 100 / the number of classes (a record's ``n_classes`` when it has one)."""
    n = record.get("n_classes")
    classes = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else DEFAULT_CLASSES
    return 100.0 / classes


def at_chance(record: dict[str, Any]) -> bool:
    """The run was flagged at_chance by its worker, or (a record older than the flag) its final clean accuracy
    is at most chance + MARGIN points: it learned nothing."""
    if AT_CHANCE in (record.get("flags") or []):
        return True
    value = (record.get("metrics") or {}).get("A_orig") if isinstance(record.get("metrics"), dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return value <= chance_level(record) + MARGIN


def chance_note(record: dict[str, Any]) -> str | None:
    """One sentence for a run at chance (None otherwise): the number, the level, what to try."""
    if not at_chance(record):
        return None
    level = chance_level(record)
    return (f"A_orig {record['metrics']['A_orig']:.2f}% is at chance ({level:.0f}% + {MARGIN:.0f} points): the model "
            "learned nothing, so its other numbers mean nothing; train longer or on more images")
