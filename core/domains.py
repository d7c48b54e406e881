"""Which data the digit-specific parts of the science apply to (docs/results.md, "Domains").

Tramèr et al.'s invariance attack picks targets from a hand-made table of *digits* (0→{4,6,8,9}, …: which digit
a few added or removed strokes turn into which), and their human-labelled invariance sets are MNIST test digits.
On any other data (Fashion-MNIST, the synthetic set) the table is still applied — the attack needs some table —
but an invariance example there is not known to change the true class, so A_IA and A_IA→target lose the
meaning they have on digits, and the human-labelled sets say nothing about such a model.
"""

from __future__ import annotations

DIGIT_DATASETS = ("mnist", "mnist-sample")
TARGET_TABLE_NOTE = "digit target table applied to non-digit data"


def is_digit_dataset(dataset: str) -> bool:
    return dataset in DIGIT_DATASETS


def target_table_note(dataset: str) -> str | None:
    """The caveat that belongs beside A_IA and A_IA→target of a run on ``dataset`` (None on digits)."""
    return None if is_digit_dataset(dataset) else TARGET_TABLE_NOTE


def human_sets_refusal(dataset: str) -> str | None:
    """Why the human-labelled sets cannot score a model trained on ``dataset`` (None when they can)."""
    if is_digit_dataset(dataset):
        return None
    return (f"the human-labelled invariance sets are MNIST digits (Tramèr et al. 2020); they say nothing about a "
            f"model trained on {dataset!r}. Score them only for runs on {' or '.join(DIGIT_DATASETS)}.")
