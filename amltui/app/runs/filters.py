"""The one filter grammar of the runs (`ls --where/--status`, `export --where/--group-by`, the dashboard's `/`).

A filter is whitespace-separated terms that must all hold: ``key=value`` (a run-record field or a config key;
``tag=x`` or ``tags=x``: the run has tag x) or a plain word (a substring of the run's id, variant, dataset,
status, sweep, grid point or tags). Keys, and the values of a key with a fixed set of values (status, variant,
dataset, preset, …), are checked, and a typed config value must parse; text is compared case-insensitively.
Mistakes are refused with a "did you mean" suggestion and the list, instead of silently matching nothing or
pooling everything into one row.
"""

from __future__ import annotations

import difflib
from typing import Any

from amltui.app.runs.records import DAMAGED, SCALAR_FIELDS
from amltui.app.runs.records import STATUSES as WRITTEN_STATUSES
from core.config import CHOICES, ConfigError, coerce, field_names

STATUSES = (*WRITTEN_STATUSES, DAMAGED)  # damaged: a record or folder that cannot be read (amltui/app/runs/records.py)

# Fields of a run record that a filter may name: the record's scalar fields (amltui/app/runs/records.py).
RECORD_KEYS = SCALAR_FIELDS


Term = tuple[str, str, Any]  # (key, its text, the typed value); key "" for a plain word (text: lower case)


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


# The keys a short message names (the dashboard's filter, where every config key would fill the screen).
COMMON_KEYS = ("variant", "seed", "status", "dataset", "tag", "sweep")


def check_key(key: str, option: str, records: list[dict[str, Any]] = (), brief: bool = False) -> str:
    keys = known_keys(records)
    if key not in keys:
        listed = (f"{', '.join(COMMON_KEYS)} or any record field or config key (`amltui config-keys`)" if brief
                  else ", ".join(keys))
        raise FilterError(f"{option}: unknown key {key!r}; {suggest(key, keys)}valid keys: {listed}")
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
    if actual is None:  # a run without the field matches no value (sweep=none is not "no sweep")
        return False
    if isinstance(actual, list | tuple):  # tags=x: the run has tag x
        return any(_same(item, wanted) for item in actual)
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted or str(actual).lower() == str(wanted).lower()
    if isinstance(actual, int | float) and isinstance(wanted, int | float):
        return float(actual) == float(wanted)
    return str(actual).lower() == str(wanted).lower()


def _canonical(key: str, value: str) -> str:
    """A value of a fixed set written in another case (``status=DONE``) as the set spells it."""
    allowed = allowed_values(key) or ()
    return next((str(a) for a in allowed if str(a).lower() == value.lower()), value)


def parse_term(word: str, option: str, records: list[dict[str, Any]] = (), brief: bool = False) -> Term | None:
    """One term: ``key=value`` checked (FilterError naming the fix), a plain word as ("", word, word); None for
    ``key=`` with no value yet (the dashboard's filter as it is being typed). ``brief``: name the common keys
    only in the message."""
    key, sep, text = word.partition("=")
    if not sep:
        return "", word.lower(), word.lower()
    key, text = key.strip(), text.strip()
    check_key(key, option, records, brief)
    if not text:
        return None
    text = _canonical(key, text)
    return key, text, check_value(key, text, option)


def parse_query(text: str, records: list[dict[str, Any]] = (), option: str = "filter") -> list[Term]:
    """A filter's text (whitespace-separated terms, all of which must hold) → checked terms; an unknown key's
    message names the common keys only."""
    terms = (parse_term(word, option, records, brief=True) for word in text.split())
    return [t for t in terms if t is not None]


def search_text(record: dict[str, Any], point: str = "") -> str:
    """What a plain word is looked for in: the id, variant, dataset, status, sweep, grid point and tags."""
    tags = record.get("tags") if isinstance(record.get("tags"), list) else []
    words = (record.get("id"), record.get("variant"), record.get("dataset"), record.get("status"),
             record.get("sweep"), point, *tags)
    return " ".join(str(w) for w in words if w not in (None, "")).lower()


def matches(record: dict[str, Any], term: Term, search: str | None = None) -> bool:
    """Whether a run passes one term (``search``: its search_text, when already made)."""
    key, text, wanted = term
    if not key:
        return text in (search if search is not None else search_text(record))
    return _same(value_of(record, key), wanted)


def parse_where(items: list[str], records: list[dict[str, Any]]) -> list[Term]:
    """``key=value`` items (`--where`) → checked terms."""
    parsed = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise FilterError(f"--where {item!r} is not of the form key=value (e.g. dataset=mnist)")
        parsed.append(parse_term(item.strip(), "--where", records))
    return parsed


def apply_where(records: list[dict[str, Any]], filters: list[tuple[str, str, Any]],
                option: str = "--where") -> tuple[list[dict[str, Any]], str | None]:
    """(matching records, None) or ([], a sentence naming the filter that left no run)."""
    for key, text, wanted in filters:
        before = len(records)
        records = [r for r in records if matches(r, (key, text, wanted))]
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
