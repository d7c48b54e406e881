"""Issue 13 in the results and compare screens, driven with Pilot at 80×24 and 100×30: settings told apart by a
short label at 80 columns, each setting's group kept together with its baseline first; several runs' curves
overlaid with a legend of their ids, and a config diff of only what differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from amltui.app.runs.folders import create_run, run_dir
from amltui.app.runs.records import now
from amltui.app.runs.states import save_record
from amltui.app.runs.store import Store
from amltui.tui.dashboard import DashboardApp
from amltui.tui.demo import seed_demo
from amltui.tui.screens.compare import CompareScreen, config_diff
from amltui.tui.screens.results import ResultsScreen
from amltui.tui.widgets.chart import LineChart
from core.config import RunConfig
from tests.helpers import assert_snapshot, ready, run_app, screen_text, settled, wait_for

SIZES = [(80, 24), (100, 30)]





@pytest.fixture
def two_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Finished runs (no training) of two settings that differ only in epochs: baseline and ml_sa, seeds 0 and 1.

    Created ml_sa first, so a screen that kept the creation order would not put the baselines first."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    store = Store(runs)
    for epochs in (3, 2):
        for variant in ("ml_sa", "baseline"):
            for seed in (0, 1):
                config = RunConfig.resolve(variant, "quick", seed=seed, dataset="synthetic", epochs=epochs)
                record = create_run(store, config, f"{variant}-e{epochs}-s{seed}")
                bump = (variant == "ml_sa") + epochs / 10
                record.update(status="done", epoch=epochs, ended=now(), started=now(),
                              metrics={"A_orig": 90.0 + bump + seed, "A_SA": 40.0 + bump, "A_PGD": 30.0 + bump},
                              metrics_n={"A_orig": 128, "A_SA": 128, "A_PGD": 128})
                save_record(store, run_dir(runs, record["id"]), record)
    return runs


def results_rows(app: DashboardApp) -> list[list[str]]:
    table = app.screen.query_one("#results", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_results_tell_settings_apart_and_keep_each_group_with_its_baseline_first(two_settings: Path, size) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ResultsScreen)
        await wait_for(pilot, lambda: screen.loaded and results_rows(app), what="the rows")
        await settled(pilot)
        rows = [(r[0], r[1]) for r in results_rows(app)]
        assert rows == [("S1", "baseline"), ("S1", "ml_sa"), ("S2", "baseline"), ("S2", "ml_sa")]
        text = screen_text(app)
        legend = [line.strip() for line in text.splitlines() if line.strip().startswith(("S1 =", "S2 ="))]
        assert len(legend) == 2 and legend[0] != legend[1], text
        assert any("epochs=2" in line for line in legend) and any("epochs=3" in line for line in legend)
        # at 80 columns the label is on every row: the two baseline rows are told apart on screen
        shown = [line for line in text.splitlines() if " baseline " in line]
        assert {line.split()[0] for line in shown} >= {"S1", "S2"}, text
        if size == (80, 24):
            assert_snapshot("results_settings", text)

    run_app(two_settings, body, size=size)


@pytest.mark.slow
def test_results_with_many_settings_name_the_highlighted_rows(two_settings: Path) -> None:
    store = Store(two_settings)
    for lr in (1e-4, 3e-4):  # two more settings: four in all, too many to spell out under the table
        config = RunConfig.resolve("baseline", "quick", seed=0, dataset="synthetic", epochs=2, lr=lr)
        record = create_run(store, config, f"lr{lr}")
        record.update(status="done", epoch=2, metrics={"A_orig": 80.0}, metrics_n={"A_orig": 128})
        save_record(store, run_dir(two_settings, record["id"]), record)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        await pilot.press("r")
        screen = app.screen
        await wait_for(pilot, lambda: screen.loaded and len(results_rows(app)) == 6, what="the rows")
        await wait_for(pilot, lambda: "4 settings: move the cursor" in screen_text(app), what="the hint")
        first = next(line for line in screen_text(app).splitlines() if "4 settings" in line)
        await pilot.press("down", "down", "down")
        await wait_for(pilot, lambda: first not in screen_text(app), what="the highlighted row's setting")
        assert results_rows(app)[3][0] in next(line for line in screen_text(app).splitlines() if "4 settings" in line)

    run_app(two_settings, body, size=(80, 24))


# ---- compare ------------------------------------------------------------------------------------------


def test_config_diff_keeps_only_what_differs() -> None:
    a = {"variant": "baseline", "lr": 0.001, "seed": 0, "data_dir": None, "overrides": ["x=1"]}
    b = {"variant": "ml_sa", "lr": 0.001, "seed": 1, "data_dir": None, "overrides": []}
    assert config_diff([a, b]) == [("variant", ["baseline", "ml_sa"]), ("seed", ["0", "1"])]
    assert config_diff([a, dict(a)]) == []
    assert config_diff([a, None, {**a, "data_dir": "/d"}]) == [("data_dir", ["none", "–", "/d"])]





@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo runs folder with ml_sa-s0-demo's curves changed: the demo's runs share their curves, real runs
    do not (overrides tests/conftest.py's demo)."""
    monkeypatch.chdir(tmp_path)
    seed_demo(Path("runs"))
    path = Path("runs") / "ml_sa-s0-demo" / "metrics.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for line in lines:
        if line.get("kind") == "epoch":
            line["train_loss"] *= 2
            line["monitor_A_SA"] /= 2
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Path("runs")


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_compare_overlays_the_curves_and_diffs_the_configs(demo: Path, size) -> None:
    ids = ["baseline-s0-demo", "ml_sa-s0-demo", "ml_sa_ia-s1-demo"]

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        await ready(app, pilot)
        app.push_screen(CompareScreen([*ids, "no-such-run"]))
        screen = app.screen
        await wait_for(pilot, lambda: screen.runs, what="the runs' folders")
        # the legend, the footer and the tab's underline settled (a snapshot must not catch them half drawn)
        await wait_for(pilot, lambda: all(part in screen_text(app) for part in ("ml_sa_ia-s1-demo", "esc Back", "╸")),
                       what="the whole screen")
        await settled(pilot)
        text = screen_text(app)
        for i, run_id in enumerate(ids, 1):  # the legend: a numbered mark and the id per run
            assert f"━{i} {run_id}" in text
        assert "━4 no-such-run" in text and "not found" in text
        assert "99.25" in text and "71.65" in text  # ml_sa-s0's final A_orig and A_PGD
        loss = screen.query_one("#compare-loss", LineChart)
        finished = [s for s in loss.series]
        assert [s.label for s in finished] == ids[:2]  # ml_sa_ia-s1 is queued: no epoch yet
        assert len({s.style for s in finished}) == 2 and finished[0].points != finished[1].points
        assert "A_SA % (monitor" in text
        if size == (80, 24):
            assert_snapshot("compare", text)
        await pilot.press("m")
        await wait_for(pilot, lambda: "A_PGD % (monitor" in screen_text(app), what="the next metric")
        await pilot.press("2")
        await wait_for(pilot, lambda: "lambda_sa" in screen_text(app), what="the config diff")
        text = screen_text(app)
        assert "variant" in text and "baseline" in text and "ml_sa_ia" in text
        assert "seed " in text and "epochs" not in text and " lr " not in text  # only what differs
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen), what="back")

    run_app(demo, body, size=size)
