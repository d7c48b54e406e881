"""One runs view for both front ends (amltui/app/runs/view.py, amltui/app/runs/filters.py): rows, the progress cell from
the phase events, the sort, the one filter grammar; `amltui ls` and the dashboard list the same runs in the same
order; the launch form leaves the preflight to the service."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from typer.testing import CliRunner

from amltui.app import preflight
from amltui.app.runs.filters import FilterError, parse_where
from amltui.app.runs.view import (
    STATUS_RANK,
    FilterSyntaxError,
    filter_rows,
    make_row,
    make_rows,
    progress_cell,
    sort_missing_last,
    sort_rows,
)
from amltui.cli import app as cli
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.widgets.runs_table import RunsTable
from tests.helpers import ready, run_app, screen_text, table_ids, wait_for


def record(run_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": run_id, "status": "done", "variant": "baseline", "seed": 0, "dataset": "mnist", "epoch": 2,
            "epochs": 2, **fields}


RUNNING = {"status": "running", "epoch": 3, "epochs": 10}


# ---- the progress cell, from the phase events of progress.json ---------------------------------------------


@pytest.mark.parametrize("progress, fraction, count", [
    ({"kind": "invariance", "invariance": {"split": "train", "done": 120, "total": 1000}}, 0.12, "inv 120/1000"),
    ({"kind": "invariance", "invariance": {"split": "test", "done": 5, "total": 10}}, 0.5, "inv test 5/10"),
    ({"kind": "eval", "eval": {"metric": "A_PGD", "done": 3, "total": 10}}, 0.3, "eval A_PGD 3/10"),
    ({"kind": "phase", "phase": {"phase": "autoattack"}}, 0.0, "AA"),
    ({"kind": "batch", "batch": {"epoch": 4, "epochs": 10, "step": 50, "steps": 100, "loss": 0.5}}, 0.35, "3/10"),
    ({"kind": "epoch", "epoch": {"epoch": 3, "epochs": 10}}, 0.3, "3/10"),
    ({"kind": "eval", "eval": "garbled"}, 0.0, "3/10"),  # an unreadable event: the epochs, never an exception
])
def test_a_running_runs_progress_comes_from_its_phase_event(progress: dict, fraction: float, count: str) -> None:
    cell = progress_cell(record("r", **RUNNING), progress)
    assert cell == (pytest.approx(fraction), count)
    assert cell.text == f"{cell.bar} {count}"


def test_ls_metric_cells_are_the_views_final_numbers_and_the_dashboard_adds_the_monitor() -> None:
    """One home for the metric cells: `ls` renders the row's final numbers (two decimals, nothing before the
    evaluation), the dashboard its live cells (one decimal, "~" monitor estimate until then)."""
    from amltui.cli.runs_listing import cell

    done = make_row(record("d", metrics={"A_orig": 93.604, "A_PGD": 80.0}), {}, 0)
    live = make_row(record("l", status="running", metrics={}, last={"monitor_A_PGD": 41.27}), {}, 1)
    assert (cell(done, "A_orig"), cell(done, "A_PGD"), cell(done, "A_AA")) == ("93.60", "80.00", "")
    assert (done.cells["A_orig"], done.cells["A_PGD"]) == ("93.6", "80.0")
    assert cell(live, "A_PGD") == "" and live.cells["A_PGD"] == "~41.3"


def test_a_finished_or_waiting_runs_progress_is_its_epochs() -> None:
    assert progress_cell(record("a"), {}) == (1.0, "2/2")
    phase = {"kind": "phase", "phase": {"phase": "eval"}}  # stale progress.json of a run no longer running
    assert progress_cell(record("b", status="queued", epoch=1, epochs=4), phase) == (0.25, "1/4")


def test_the_row_carries_the_progress_it_shows() -> None:
    progress = {"kind": "eval", "eval": {"metric": "A_SA", "done": 1, "total": 4}}
    row = make_row(record("r", **RUNNING), progress, 0)
    assert row.progress == (0.25, "eval A_SA 1/4") and row.cells["progress"] == row.progress.text
    assert row.sort["progress"] == 0.25


def test_make_rows_reads_progress_of_running_runs_only() -> None:
    asked: list[str] = []
    rows = make_rows([record("a"), record("b", **RUNNING)], lambda r: asked.append(r["id"]) or {})
    assert asked == ["b"] and [r.key for r in rows] == ["a", "b"] and [r.sort["created"] for r in rows] == [0, 1]


# ---- sort -------------------------------------------------------------------------------------------------


def rows_of(*records: dict[str, Any]) -> list:
    return [make_row(r, {}, i) for i, r in enumerate(records)]


def ids(rows: list) -> list[str]:
    return [r.key for r in rows]


def test_runs_without_a_value_come_last_in_both_directions() -> None:
    rows = rows_of(record("none"), record("hi", metrics={"A_PGD": 80.0}), record("lo", metrics={"A_PGD": 20.0}))
    assert ids(sort_rows(rows, "A_PGD")) == ["lo", "hi", "none"]
    assert ids(sort_rows(rows, "A_PGD", reverse=True)) == ["hi", "lo", "none"]


def test_status_sorts_by_rank_and_ties_keep_creation_order() -> None:
    rows = rows_of(record("d1"), record("f", status="failed"), record("d2"), record("r", status="running"))
    assert ids(sort_rows(rows, "status")) == ["r", "f", "d1", "d2"]
    assert STATUS_RANK["running"] == 0
    assert ids(sort_rows(rows, "status", reverse=True)) == ["d2", "d1", "f", "r"]  # ties reversed with the rest


def test_a_config_key_or_metric_without_a_column_sorts_too() -> None:
    rows = rows_of(record("a", config={"lr": 0.01}), record("b", config={"lr": 0.001}), record("c"))
    assert ids(sort_rows(rows, "lr")) == ["b", "a", "c"]
    assert sort_missing_last(["x", 2, None, 1.5, []], lambda v: v) == [1.5, 2, "x", None, []]  # numbers first


# ---- the one filter grammar ---------------------------------------------------------------------------------


FILTERED = rows_of(record("ml_sa-s0", variant="ml_sa", tags=["paper", "Fig2"], sweep="eps"),
                   record("ml_sa-s1", variant="ml_sa", seed=1, status="failed"),
                   record("baseline-s0", tags=["paper"]))


@pytest.mark.parametrize("text, expected", [
    ("variant=ml_sa", ["ml_sa-s0", "ml_sa-s1"]),
    ("tag=paper", ["ml_sa-s0", "baseline-s0"]),
    ("tags=fig2", ["ml_sa-s0"]),  # tags=, and any case
    ("paper ml_sa", ["ml_sa-s0"]),  # plain words: substrings of id, variant, dataset, status, sweep or tags
    ("status=FAILED", ["ml_sa-s1"]),
    ("seed=0 variant=ml_sa", ["ml_sa-s0"]),
    ("sweep=eps", ["ml_sa-s0"]),
    ("sweep=none", []),  # no sweep is not the sweep "none"
    ("variant=", ["ml_sa-s0", "ml_sa-s1", "baseline-s0"]),  # still being typed
    ("", ["ml_sa-s0", "ml_sa-s1", "baseline-s0"]),
])
def test_filter_terms(text: str, expected: list[str]) -> None:
    assert ids(filter_rows(FILTERED, text)) == expected


@pytest.mark.parametrize("text, says", [
    ("varient=ml_sa", "unknown key 'varient'; did you mean 'variant'"),
    ("variant=ml_saa", "'ml_saa' is not a value of variant; did you mean 'ml_sa'"),
    ("status=sleeping", "valid values: queued, running"),
    ("seed=one", "seed"),
])
def test_a_bad_term_names_the_problem_and_the_valid_choices(text: str, says: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        filter_rows(FILTERED, text)
    assert says in str(info.value)


def test_where_is_the_same_grammar_with_key_value_terms_only() -> None:
    records = [r.record for r in FILTERED]
    assert parse_where(["tag=paper", "variant=ml_sa"], records) == [("tag", "paper", "paper"),
                                                                   ("variant", "ml_sa", "ml_sa")]
    with pytest.raises(FilterError, match="not of the form key=value"):
        parse_where(["paper"], records)
    with pytest.raises(FilterError, match="did you mean 'variant'"):
        parse_where(["varient=ml_sa"], records)


# ---- both front ends: the same rows in the same order --------------------------------------------------------


def ls_ids(runs: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["ls", "--json", "--runs-dir", str(runs), *args])
    assert result.exit_code == 0, result.output
    return [r["id"] for r in json.loads(result.output)]


@pytest.mark.slow
@pytest.mark.parametrize("where, sort, reverse", [
    ("variant=ml_sa", "A_PGD", True), ("status=done", "seed", False), ("tag=paper", "status", False),
])
def test_ls_and_the_dashboard_list_the_same_runs_in_the_same_order(demo: Path, where: str, sort: str,
                                                                   reverse: bool) -> None:
    from amltui.app.runs.store import Store, update_record

    store = Store(demo)
    for i, r in enumerate(store.all()):  # some tagged runs, so that tag= has something to keep
        if i % 2:
            update_record(store, r["id"], lambda rec: {**rec, "tags": ["paper"]})
    expected = ls_ids(demo, "--where", where, "--sort", ("-" if reverse else "") + sort)
    assert expected, "the filter keeps some runs"
    shown: list[str] = []

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        table = app.screen.query_one(RunsTable)
        table.set_filter(where)
        table.set_sort(sort)
        if reverse:
            table.toggle_reverse()
        await pilot.pause()
        shown.extend(table_ids(app))

    run_app(demo, body)
    assert shown == expected


# ---- the launch form: the service's preflight, once -----------------------------------------------------------


@pytest.mark.slow
def test_the_form_leaves_the_preflight_to_the_service(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def check(config: Any, **options: Any) -> None:
        calls.append(options)
        raise preflight.PreflightError("planted: the data is missing")

    monkeypatch.setattr(preflight, "check_config", check)
    # and the service's own name for it (the package's `launch` is the function, hence import_module)
    monkeypatch.setattr(importlib.import_module("amltui.app.service.launch"), "check_config", check)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, LaunchScreen)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not form.busy and "planted" in screen_text(app), what="the preflight error")

    run_app(demo, body)
    # One call per data setting, made by the service with the executor it will use (local=True), not the form's.
    assert calls and all(c.get("local") is True for c in calls), calls


# ---- the live lines of `amltui run` restart a phase's clock from the phase events too -------------------------


def test_the_phase_of_a_live_line_comes_from_the_phase_event() -> None:
    from amltui.app.runs.progress import phase_of

    running = record("r", **RUNNING)
    batch = {"kind": "batch", "batch": {"epoch": 1, "epochs": 2, "step": 1, "steps": 9, "loss": 0.1}}
    assert phase_of(running, batch) == phase_of(running, {"kind": "epoch", "epoch": {"epoch": 1}}) == "train"
    train = {"kind": "invariance", "invariance": {"split": "train", "done": 1, "total": 9}}
    test = {"kind": "invariance", "invariance": {"split": "test", "done": 1, "total": 9}}
    assert phase_of(running, train) != phase_of(running, test)
    assert phase_of(running, {"kind": "eval", "eval": {"metric": "A_SA"}}) == "eval A_SA"
    assert phase_of(running, {"kind": "phase", "phase": {"phase": "eval"}}) == "phase eval"
    assert phase_of(running, {"kind": "eval", "eval": "garbled"}) == "starting"
    assert phase_of(record("d"), batch) == "done"  # an ended run: its status, whatever progress.json says


def test_the_dashboard_shows_and_sorts_every_metric_of_core_metrics() -> None:
    """The runs table's metric columns, its numeric columns and the sort keys come from core/metrics.py's lists:
    a metric added there is shown, right-aligned and sortable without another edit."""
    from amltui.app.runs.view import SORTS
    from amltui.tui.data import COLUMNS, NUMERIC
    from core.metrics import HEADLINE_ORDER, METRIC_ORDER, METRIC_SHORT_LABELS

    shown = [(key, label) for key, label, _ in COLUMNS if key in METRIC_ORDER]
    assert shown == [(key, METRIC_SHORT_LABELS[key]) for key in HEADLINE_ORDER]
    assert set(METRIC_ORDER) <= set(NUMERIC) and set(METRIC_ORDER) <= set(SORTS)
    row = make_row(record("m", metrics={key: 50.0 + i for i, key in enumerate(METRIC_ORDER)}), {}, 0)
    assert [row.cells[key] for key in METRIC_ORDER] == [f"{50.0 + i:.1f}" for i in range(len(METRIC_ORDER))]
