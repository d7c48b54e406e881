"""Issue 13 in the launch form and the run detail, driven with Pilot at 80×24 and 100×30: ticks readable as
text, remembered values, data fields, short override errors, preflight; the PCA computed from the tab, wrapped
log lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.pilot import Pilot

from amltui.app.runs.folders import create_run
from amltui.app.runs.store import Store
from amltui.app.science.execution import execute
from amltui.tui import actions
from amltui.tui.dashboard import DashboardApp
from amltui.tui.demo import seed_demo
from amltui.tui.screens import new_runs
from amltui.tui.screens.detail import DetailScreen
from amltui.tui.screens.launch_values import FILE, FormValues, load_values, save_values
from amltui.tui.screens.new_runs import LaunchScreen
from amltui.tui.screens.runs import RunsScreen
from core.config import RunConfig
from tests.helpers import TINY, assert_snapshot, ready, run_app, screen_text, wait_for

SIZES = [(80, 24), (100, 30)]








async def open_form(app: DashboardApp, pilot: Pilot) -> LaunchScreen:
    await ready(app, pilot)
    await pilot.press("n")
    assert isinstance(app.screen, LaunchScreen)
    return app.screen


def buttons_visible(text: str) -> bool:
    return any("Launch" in line and "Close" in line for line in text.splitlines())


# ---- the launch form ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ticked_and_unticked_variants_read_differently_as_text(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await open_form(app, pilot)
        text = screen_text(app)
        assert "[ ] baseline" in text and "[x] ml_sa " in text and "[ ] ml_sa_ia" in text
        assert "▐X▌" not in text
        form.query_one("#v-baseline").value = True
        await pilot.pause()
        assert "[x] baseline" in screen_text(app)
        assert form.values().variants == ["baseline", "ml_sa"]

    run_app(demo, body)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_an_unknown_override_gets_a_short_did_you_mean_and_the_buttons_stay(demo: Path, size) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await open_form(app, pilot)
        form.query_one("#overrides").value = "epochs=2 lamda_ia=0.5"
        await pilot.press("ctrl+s")
        text = screen_text(app)
        assert "unknown key 'lamda_ia'; did you mean 'lambda_ia'" in text
        assert "amltui config-keys" in text and "eps_s (float)" not in text  # not the whole key table
        assert buttons_visible(text), text
        if size == (80, 24):
            assert_snapshot("launch_override_error", text)
        form.query_one("#overrides").value = "epochs=two"
        await pilot.press("ctrl+s")
        assert "epochs='two' is not a valid int" in screen_text(app)
        form.query_one("#overrides").value = "epochs"
        await pilot.press("ctrl+s")
        assert "'epochs' is not key=value" in screen_text(app)
        form.query_one("#overrides").value = "seed=3"
        await pilot.press("ctrl+s")
        assert "seed has its own field (seeds)" in screen_text(app)
        assert app.screen is form and len(Store(demo).all()) == 7  # nothing was created

    run_app(demo, body, size=size)


@pytest.mark.slow
def test_a_long_error_is_cut_so_the_buttons_stay_on_screen(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await open_form(app, pilot)
        form.show_error("\n".join(f"line {i} of a long message" for i in range(40)))
        await pilot.pause()
        text = screen_text(app)
        assert "line 3 of" in text and "line 4 of" not in text and "line 39" not in text
        assert buttons_visible(text)

    run_app(demo, body)


@pytest.mark.slow
def test_data_dir_and_subsets_are_checked_before_anything_is_queued(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await open_form(app, pilot)
        form.query_one("#dataset").value = "mnist"
        form.query_one("#data-dir").value = "no-such-folder"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not form.busy and "✗" in screen_text(app), 30,
                       "the preflight error")
        text = screen_text(app)
        assert "mnist: no folder no-such-folder" in text and "Fix: check the path" in text and buttons_visible(text)
        form.query_one("#dataset").value = "mnist-sample"
        form.query_one("#data-dir").value = ""
        form.query_one("#test-subset").value = "999999"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not form.busy and "--test-subset 999999" in screen_text(app), 30,
                       "the subset error")
        form.query_one("#test-subset").value = "100"
        form.query_one("#overrides").value = "test_subset=50"
        await pilot.press("ctrl+s")
        assert "test_subset has its own field (subsets)" in screen_text(app)
        assert app.screen is form and len(Store(demo).all()) == 7

    run_app(demo, body)


@pytest.mark.slow
def test_the_form_reopens_with_the_values_last_launched_in_this_runs_folder(demo: Path, monkeypatch) -> None:
    sent: list[actions.LaunchRequest] = []

    def fake_launch(runs_dir: Path, request: actions.LaunchRequest) -> actions.LaunchResult:
        sent.append(request)  # the real launcher is driven in tests/tui/test_dashboard.py; here only what reaches it
        return actions.LaunchResult(queued=["x-1"])

    monkeypatch.setattr(new_runs, "launch", fake_launch)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        form = await open_form(app, pilot)
        form.query_one("#v-baseline").value = True
        form.query_one("#seeds").value = "0-2"
        form.query_one("#dataset").value = "synthetic"
        form.query_one("#train-subset").value = "300"
        form.query_one("#test-subset").value = "100"
        form.query_one("#overrides").value = "epochs=2 lr=3e-4"
        form.query_one("#gpus").value = "none"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 30, "the form to close")
        assert (demo / FILE).exists()
        await pilot.press("n")
        again = app.screen
        assert isinstance(again, LaunchScreen)
        text = screen_text(app)
        assert "[x] baseline" in text and "[x] ml_sa " in text and "0-2" in text and "epochs=2 lr=3e-4" in text
        assert again.query_one("#dataset").value == "synthetic" and again.query_one("#test-subset").value == "100"

    run_app(demo, body)
    request = sent[0]
    assert request.variants == ["baseline", "ml_sa"] and request.seeds == [0, 1, 2]
    assert request.overrides == ["train_subset=300", "test_subset=100", "epochs=2", "lr=3e-4"]
    assert load_values(demo).gpus == "none"


def test_remembered_values_survive_a_damaged_file_and_odd_fields(tmp_path: Path) -> None:
    assert load_values(tmp_path) == FormValues()  # none yet
    (tmp_path / FILE).write_text("{not json")
    assert load_values(tmp_path) == FormValues()
    (tmp_path / FILE).write_text(json.dumps({"seeds": 7, "gpus": "0", "variants": ["baseline", 3]}))
    values = load_values(tmp_path)
    assert values.seeds == "0" and values.gpus == "0" and values.variants == ["ml_sa"]  # only the odd ones fall back
    save_values(tmp_path, FormValues(seeds="4", repeat=True))
    assert load_values(tmp_path) == FormValues(seeds="4", repeat=True)
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no leftovers


# ---- the run detail -----------------------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A real finished run (tiny, CPU, one epoch) with its checkpoint."""
    monkeypatch.chdir(tmp_path)
    store = Store(Path("runs"))
    config = RunConfig.resolve("ml_sa", "quick", **{**TINY, "epochs": 1, "eval_ia": False, "device": "cpu"})
    run_id = create_run(store, config)["id"]
    execute(store, run_id)
    return Path("runs"), run_id


@pytest.mark.slow
def test_the_pca_tab_computes_the_figure_and_shows_it(trained: tuple[Path, str]) -> None:
    runs_dir, run_id = trained

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        app.push_screen(DetailScreen(run_id))
        screen = app.screen
        await wait_for(pilot, lambda: screen.detail is not None, what="the run's folder")
        await pilot.press("4")
        await wait_for(pilot, lambda: "Press p to compute it here" in screen_text(app), what="the offer")
        await pilot.press("p")
        await wait_for(pilot, lambda: "FGSM-perturbed (same axes)" in screen_text(app), 300, "the figure")
        text = screen_text(app)
        assert "images" in text and any(0x2800 < ord(ch) <= 0x28FF for ch in text)
        assert (runs_dir / run_id / "pca.png").stat().st_size > 0
        assert len(json.loads((runs_dir / run_id / "pca.json").read_text())["natural"]) == 128
        assert [m for m in screen.pca_steps if m.startswith("step 2/3: embedding 128 test images")]
        # the notification is posted after the figure is drawn: wait for it rather than read it at once
        await wait_for(pilot, lambda: any("pca.png and pca.json written" in str(n.message) for n in app._notifications),
                       what="the notification that names the files")

    run_app(runs_dir, body)


@pytest.mark.slow
def test_the_pca_tab_says_why_it_cannot_compute_and_stays_usable(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        app.push_screen(DetailScreen("ml_sa-s0-demo"))  # demo runs have no checkpoint
        screen = app.screen
        await wait_for(pilot, lambda: screen.detail is not None)
        await pilot.press("p")
        await wait_for(pilot, lambda: "could not be computed" in screen_text(app), 120, "the failure")
        assert "no checkpoint" in screen_text(app) and not screen.pca_busy
        await pilot.press("1")
        await wait_for(pilot, lambda: "━ A_SA" in screen_text(app), what="the curves tab again")

    run_app(demo, body)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_long_log_lines_wrap_instead_of_being_cut(demo: Path, size) -> None:
    tail = "the end of a long line"
    line = "Traceback detail: " + "x" * (size[0] + 20) + " " + tail

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        with open(demo / "ml_sa-s0-demo" / "log.txt", "a") as fh:
            fh.write(line + "\n[b]not markup[/b]\n")
        app.push_screen(DetailScreen("ml_sa-s0-demo"))
        await pilot.press("2")
        await wait_for(pilot, lambda: tail in screen_text(app), what="the wrapped tail of the line")
        assert "[b]not markup[/b]" in screen_text(app)

    run_app(demo, body, size=size)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_the_final_line_shows_a_pgd_and_a_ia_target_on_one_line(demo: Path, size) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        app.push_screen(DetailScreen("ml_sa-s0-demo"))
        await wait_for(pilot, lambda: "final (n=1000)" in screen_text(app), what="the header")
        line = next(line for line in screen_text(app).splitlines() if "final (n=1000)" in line)
        assert "A_PGD 71.65" in line and "A_orig 99.25" in line and "A_SA 97.15" in line
        # the table's label where it fits, the narrow one (as `amltui ls`) in 80 columns: never cut or wrapped
        assert ("→tgt 14.10" if size[0] == 80 else "A_IA→target 14.10") in line

    run_app(demo, body, size=size)


@pytest.mark.slow
def test_a_running_run_shows_its_last_monitor_estimates(demo: Path) -> None:
    async def body(app: DashboardApp, pilot: Pilot) -> None:
        app.push_screen(DetailScreen("ml_sa_ia-s0-demo"))  # running, epoch 3 of 6: no final metrics yet
        await wait_for(pilot, lambda: "last epoch (monitor estimate" in screen_text(app), what="the estimates")
        line = next(line for line in screen_text(app).splitlines() if "last epoch (monitor" in line)
        assert "A_orig ~" in line and "A_SA ~" in line and "final (" not in screen_text(app)

    run_app(demo, body)


@pytest.mark.slow
def test_the_triplet_diagnostics_are_charted_and_shown_per_epoch(trained: tuple[Path, str]) -> None:
    """A real ml_sa run: its SA triplet's active share and mined-negative distance are in metrics.jsonl, drawn on
    the Curves tab and tabled by `show`; a run without triplets (the demo baseline) has no such chart."""
    from typer.testing import CliRunner

    from amltui.cli import app as cli
    from amltui.tui.widgets.chart import LineChart

    runs_dir, run_id = trained
    epoch = next(json.loads(line) for line in (runs_dir / run_id / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line).get("kind") == "epoch")
    assert 0 < epoch["train_active_sa"] <= 1 and 0 <= epoch["train_neg_dist_sa"] <= 1
    assert "train_active_ia" not in epoch  # ml_sa has no IA triplet: nothing to chart for it

    shown = CliRunner().invoke(cli, ["show", run_id, "--runs-dir", str(runs_dir)], terminal_width=100)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    at = next(i for i, line in enumerate(lines) if "act_sa%" in line)
    assert lines[at].split() == ["epoch", "T_sa", "act_sa%", "D⁻_sa"] and "triplets (abs_cos)" in lines[at - 1]
    row = lines[at + 2].split()  # below the header's rule
    assert row[0] == "1"
    assert float(row[2]) == pytest.approx(100 * epoch["train_active_sa"], abs=0.05)
    assert float(row[3]) == pytest.approx(epoch["train_neg_dist_sa"], abs=5e-5)

    async def body(app: DashboardApp, pilot: Pilot) -> None:
        app.push_screen(DetailScreen(run_id))
        await wait_for(pilot, lambda: "━ D⁻ SA" in screen_text(app), what="the triplet chart")
        chart = app.screen.query_one("#triplet-chart", LineChart)
        assert chart.display and [s.label for s in chart.series] == ["active SA", "D⁻ SA"]
        assert chart.series[1].points == [(1.0, pytest.approx(epoch["train_neg_dist_sa"]))]
        assert "━ active IA" not in screen_text(app)
        app.pop_screen()
        seed_demo(runs_dir)  # the demo's runs (replacing the index), whose epochs hold no triplet diagnostics
        app.push_screen(DetailScreen("baseline-s0-demo"))
        await wait_for(pilot, lambda: "━ A_SA" in screen_text(app), what="the baseline's curves")
        assert not app.screen.query_one("#triplet-chart", LineChart).display

    run_app(runs_dir, body, size=(100, 30))
