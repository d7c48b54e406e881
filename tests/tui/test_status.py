"""The dashboard's status tables are keyed by amltui.app.runs.records.Status: a new status cannot be forgotten."""

from __future__ import annotations

from amltui.app.runs.records import LIVE, Status
from amltui.tui.data import RESUMABLE, STATUS_RANK, STATUS_STYLE, make_row


def test_every_status_has_a_rank_and_a_style() -> None:
    assert set(STATUS_RANK) == set(Status) and set(STATUS_STYLE) == set(Status)
    assert sorted(STATUS_RANK.values()) == list(range(len(Status)))  # a strict order, no ties
    assert STATUS_RANK[Status.RUNNING] == 0 and STATUS_RANK[Status.DONE] == len(Status) - 1
    assert not RESUMABLE & {Status.QUEUED, Status.RUNNING, Status.STALLED, Status.DONE}


def test_a_row_sorts_by_the_status_rank_from_a_plain_string() -> None:
    """Records hold plain strings (JSON); the Status-keyed tables answer for them."""
    record = {"id": "r1", "status": "stalled", "epoch": 1, "epochs": 4}
    row = make_row(record, {}, 0)
    assert row.sort["status"] == STATUS_RANK[Status.STALLED] and "stalled" in LIVE
    assert row.cells["progress"].endswith("1/4")
