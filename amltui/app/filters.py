"""Key/value filters of the command line (`ls --status`, `export --where/--group-by`), checked before use.

A key must be a run-record field or a config key; a value of a key with a fixed set of values (status, variant,
dataset, preset, …) must be one of them, and a typed config value must parse. Mistakes are refused with a "did
you mean" suggestion and the list, instead of silently matching nothing or pooling everything into one row.
"""

from __future__ import annotations

import difflib
from typing import Any

from amltui.app.records import DAMAGED
from amltui.app.records import STATUSES as WRITTEN_STATUSES
from core.config import CHOICES, ConfigError, coerce, field_names

STATUSES = (*WRITTEN_STATUSES, DAMAGED)  # damaged: a record or folder that cannot be read (amltui/app/records.py)

# Fields of a run record (amltui/app/runs.py create_run, execute and the executors) that a filter may name.
RECORD_KEYS = ("id", "status", "variant", "seed", "dataset", "preset", "arch", "group", "context", "fingerprint",
               "code_version", "created", "started", "ended", "epoch", "epochs", "device", "host", "pid", "slot",
               "executor", "slurm_job_id", "error", "n_train", "n_test", "resumes", "evaluated", "gpu", "select",
               "selected_epoch", "damaged", "sweep", "tags", "note")


class FilterError(ValueError):
    """A filter names a key or value that does not exist; the message says what would."""


def suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(str(c)) for c in close)}? " if close else ""  # str: a Status shows as text


def known_keys(records: list[dict[str, Any]] = ()) -> list[str]:
    """Record fields, config keys and any other top-level field the given records have."""
    keys = set(RECORD_KEYS) | {"tag"} | (set(field_names()) - {"overrides"})
    for record in records:
        keys |= {k for k, v in record.items() if not isinstance(v, dict | list)}
    return sorted(keys)


def check_key(key: str, option: str, records: list[dict[str, Any]] = ()) -> str:
    keys = known_keys(records)
    if key not in keys:
        raise FilterError(f"{option}: unknown key {key!r}; {suggest(key, keys)}valid keys: {', '.join(keys)}")
    return key


def allowed_values(key: str) -> tuple[str, ...] | None:
    if key == "status":
        return STATUSES
    return CHOICES.get(key)


def check_value(key: str, value: str, option: str) -> Any:
    """The value to compare with (typed for config keys); FilterError when it cannot be one of the key's."""
    allowed = allowed_values(key)
    if allowed is not None and value not in allowed:
        raise FilterError(f"{option}: {key}={value!r} is not a value of {key}; {suggest(value, allowed)}"
                          f"valid values: {', '.join(allowed)}")
    if key in field_names() and key != "overrides":
        try:
            return coerce(key, value)
        except ConfigError as exc:
            raise FilterError(f"{option}: {exc}") from None
    return value


def value_of(record: dict[str, Any], key: str) -> Any:
    """A record field, or else the run's resolved config value."""
    if key == "tag":  # tag=X (as in the dashboard's filter): X is one of the run's tags, as tags=X
        return record.get("tags") or []
    if key in record:
        return record[key]
    return (record.get("config") or {}).get(key)


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, list | tuple):  # tags=x: the run has tag x
        return any(_same(item, wanted) for item in actual)
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted or str(actual).lower() == str(wanted).lower()
    if isinstance(actual, int | float) and isinstance(wanted, int | float):
        return float(actual) == float(wanted)
    return str(actual) == str(wanted)


def parse_where(items: list[str], records: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """``key=value`` items → checked (key, text, typed value) triples."""
    parsed = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FilterError(f"--where {item!r} is not of the form key=value (e.g. dataset=mnist)")
        check_key(key, "--where", records)
        parsed.append((key, text.strip(), check_value(key, text.strip(), "--where")))
    return parsed


def apply_where(records: list[dict[str, Any]], filters: list[tuple[str, str, Any]],
                option: str = "--where") -> tuple[list[dict[str, Any]], str | None]:
    """(matching records, None) or ([], a sentence naming the filter that left no run)."""
    for key, text, wanted in filters:
        before = len(records)
        records = [r for r in records if _same(value_of(r, key), wanted)]
        if before and not records:
            shown = text if option == "--status" else f"{key}={text}"
            return [], f"no run matches {option} {shown} (of {before} run(s) that passed the filters before it)"
    return records, None


def check_group_by(text: str, records: list[dict[str, Any]]) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise FilterError("--group-by is empty; give record/config keys, e.g. variant,dataset")
    for key in keys:
        check_key(key, "--group-by", records)
    return keys
