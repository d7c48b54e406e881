"""Sweeps in the dashboard: the launch form's grid (refusals, confirmation) and the results screen's sweep view."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.app.runs.store import Store
from amltui.app.runs.sweeps import save_manifest
from amltui.tui.actions import ActionError, LaunchRequest, resolve_configs
from amltui.tui.dashboard import DashboardApp
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.results import ResultsScreen
from tests.helpers import ready, run_app, screen_text, wait_for


async def screen_after(app: DashboardApp, pilot: Pilot, key: str, kind: type):
    """The screen a key opens from the runs screen, once the dashboard is ready."""
    await ready(app, pilot)
    await pilot.press(key)
    assert isinstance(app.screen, kind)
    return app.screen


def test_launch_request_with_a_grid_resolves_every_point_and_names_the_sweep():
    request = LaunchRequest(variants=["ml_sa_ia"], seeds=[0, 1], preset="quick", dataset="synthetic",
                            overrides=["epochs=1"], grid=["lambda_ia=0.25,1", "lr=1e-4:1e-3:log:2"])
    configs = resolve_configs(request)
    assert len(configs) == 8 and {c.lr for c in configs} == {0.0001, 0.001}
    assert request.sweep.startswith("sweep-lambda_ia-lr-") and all(c.epochs == 1 for c in configs)
    with pytest.raises(ActionError, match="grid point lambda_ia=0"):
        resolve_configs(LaunchRequest(variants=["ml_sa_ia"], seeds=[0], preset="quick", dataset="synthetic",
                                      overrides=[], grid=["lambda_ia=0,1"]))


@pytest.mark.slow
def test_launch_form_refuses_a_bad_grid_and_asks_before_a_large_sweep(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await screen_after(app, pilot, "n", LaunchScreen)
        form.query_one("#grid").value = "lamda_ia=0.5"
        await pilot.press("ctrl+s")
        assert "did you mean 'lambda_ia'" in screen_text(app)
        form.query_one("#grid").value = "lr=1e-4:1e-2:log:60"
        form.query_one("#sweep").value = "big"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "60 runs (sweep big)" in screen_text(app), what="the confirmation")
        assert app.screen is form and len(Store(demo).all()) == 7  # nothing queued before the second press
        await pilot.press("escape")

    run_app(demo, body, size=(100, 60))


@pytest.mark.slow
def test_results_screen_shows_one_sweep_with_its_frontier(demo: Path) -> None:
    ids = [r["id"] for r in Store(demo).all() if r.get("status") == "done"]
    save_manifest(demo, "demo-sweep", {}, ids)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        screen = await screen_after(app, pilot, "r", ResultsScreen)
        await wait_for(pilot, lambda: screen.loaded)
        await pilot.press("s")
        await wait_for(pilot, lambda: "Sweep demo-sweep" in screen_text(app), what="the sweep view")
        await wait_for(pilot, lambda: "Pareto front" in screen_text(app), what="the frontier")
        text = screen_text(app)
        assert "A_PGD" in text and "1 baseline" in text
        await pilot.press("s")  # the only sweep: back to all results
        await wait_for(pilot, lambda: "Sweep demo-sweep" not in screen_text(app), what="all results again")

    run_app(demo, body, size=(100, 60))
