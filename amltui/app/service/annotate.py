"""Tags and notes on runs (`amltui tag`, `amltui note`): the record's ``tags`` and ``note`` fields, written with
update_record (amltui/app/runs/store.py) so a worker writing the same record at the same time loses nothing."""

from __future__ import annotations

import re
from typing import Any

from amltui.app.errors import UserError
from amltui.app.runs.store import SKIP, Store, StoreError, Unchanged, update_record, update_records

Record = dict[str, Any]
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,39}")
TAG_HINT = "a tag is 1–40 letters, digits or _ . : + - (starting with a letter or digit), e.g. paper-table"
NOTE_MAX = 2000


def check_tag(tag: str) -> str:
    """The tag, if it is one (no spaces, commas or '=': it must survive `--where tag=X` and table cells)."""
    if not TAG.fullmatch(tag):
        raise UserError(f"{tag!r} is not a tag", TAG_HINT)
    return tag


def tag_runs(store: Store, run_ids: list[str], tag: str, *, remove: bool = False) -> list[tuple[str, bool]]:
    """Add (or remove) ``tag`` on each run; (run id, whether its tags changed) per run."""
    check_tag(tag)

    def edit(record: Record) -> Unchanged | None:
        tags = [t for t in record.get("tags") or [] if isinstance(t, str)]
        new = [t for t in tags if t != tag] if remove else tags + ([tag] if tag not in tags else [])
        if new == tags:
            return SKIP
        record["tags"] = new
        return None

    try:  # one write of the index for all the runs, not one per run
        saved = update_records(store, run_ids, edit)
    except (OSError, StoreError, ValueError) as exc:
        raise UserError(f"could not tag the runs: {exc}") from None
    return [(run_id, record is not None) for run_id, record in zip(run_ids, saved, strict=True)]


def set_note(store: Store, run_id: str, text: str) -> str | None:
    """Set the run's note (verbatim; an empty text clears it); the note now stored."""
    note = text.strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise UserError(f"the note has {len(note)} characters; at most {NOTE_MAX}",
                        "keep notes short; put long text in a file inside the run folder")
    saved = _write(store, run_id, lambda record: record.update(note=note))
    return note if saved is None else saved.get("note")


def _write(store: Store, run_id: str, edit: Any) -> Record | None:
    """update_record, its failures (run folder gone, record unreadable, disk full) as a UserError."""
    try:
        return update_record(store, run_id, edit)
    except (OSError, StoreError, ValueError) as exc:
        raise UserError(f"run {run_id}: could not write its record: {exc}") from None
