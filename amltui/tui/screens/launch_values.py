"""The launch form's values: remembered per runs folder, and the override field checked against the key table.

The values live in ``<runs dir>/launch-form.json`` (written atomically when a launch succeeds), so each runs
folder reopens the form as it was last used there. A missing or damaged file gives the defaults: the form must
always open.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amltui.app.errors import did_you_mean
from amltui.app.fsutil import atomic_write_json, read_json
from core.config import ConfigError, coerce, key_specs

FILE = "launch-form.json"
# Keys with a field of their own in the form: an override of them is refused with a pointer to the field (the
# data keys only when that field is filled in too: two values for one key would leave one silently unused).
OWN_FIELD = {"variant": "variants", "seed": "seeds", "preset": "preset", "dataset": "dataset",
             "overrides": "overrides"}
DATA_FIELD = {"data_dir": "data dir", "train_subset": "subsets", "test_subset": "subsets"}


@dataclass
class FormValues:
    """What the form shows when it opens (strings as typed, so an odd value comes back as the user left it)."""

    variants: list[str] = field(default_factory=lambda: ["ml_sa"])
    seeds: str = "0"
    preset: str = "quick"
    dataset: str = "mnist-sample"
    data_dir: str = ""
    train_subset: str = ""
    test_subset: str = ""
    overrides: str = ""
    grid: str = ""
    gpus: str = ""
    cpu_slots: str = ""
    repeat: bool = False


def load_values(runs_dir: Path) -> FormValues:
    """The values last launched from this runs folder; the defaults when there are none or they are unreadable."""
    try:
        data = read_json(Path(runs_dir) / FILE)
    except (OSError, ValueError):
        return FormValues()
    if not isinstance(data, dict):
        return FormValues()
    defaults = FormValues()
    kept: dict[str, Any] = {}
    for f in dataclasses.fields(FormValues):  # a value of the wrong type (an edited file) falls back alone
        value, default = data.get(f.name), getattr(defaults, f.name)
        if isinstance(value, type(default)) and (not isinstance(value, list) or all(isinstance(v, str)
                                                                                     for v in value)):
            kept[f.name] = value
    return FormValues(**kept)


def save_values(runs_dir: Path, values: FormValues) -> None:
    """Remember the values for the next form opened on this runs folder (atomic: never a half-written file)."""
    atomic_write_json(Path(runs_dir) / FILE, dataclasses.asdict(values), durable=False)


def check_overrides(items: list[str], filled: set[str] = frozenset()) -> None:
    """Refuse an override that is not ``key=value`` of a settable key, or whose value the key cannot take.

    The message is one or two short lines (it must fit the form): the key, a "did you mean", and where the full
    list is (`amltui config-keys`), never the whole key table. ``filled``: the DATA_FIELD keys the form sets.
    """
    keys = [spec.name for spec in key_specs()]
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"overrides: {item!r} is not key=value (e.g. epochs=4)")
        if key in OWN_FIELD or key in filled:
            where = OWN_FIELD.get(key) or DATA_FIELD[key]
            raise ConfigError(f"overrides: {key} has its own field ({where}); set it there only")
        if key not in keys:
            raise ConfigError(f"overrides: unknown key {key!r}; {did_you_mean(key, keys)}"
                              "`amltui config-keys` lists them all")
        coerce(key, raw.strip())  # ConfigError: names the key, the value and what it takes


def subset_value(label: str, text: str) -> str | None:
    """A subset field as an override value: None when empty, else a whole number ≥ 1 (ConfigError otherwise)."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{label}: a whole number of images ≥ 1 (or empty for the whole split)")
    return text
