"""GPU visibility, busy GPUs and memory fit, without a GPU: a fake NVML module and a fake nvidia-smi on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from amltui.app import gpus
from amltui.app.executors.local import LocalScheduler
from amltui.app.executors.slots import local_plan
from amltui.app.gpus import (
    CONTEXT_MIB,
    GpuError,
    GpuGate,
    Inventory,
    Thresholds,
    inventory,
    nvml_inventory,
    smi_inventory,
    store_footprint,
    visible_gpus,
)
from amltui.app.runs.folders import create_run, run_dir
from amltui.app.runs.states import save_record
from amltui.app.runs.store import Store
from amltui.cli import app
from core.config import RunConfig
from tests.gpu_fakes import GIB, fake_nvml, gpu, install_fake_smi, use_fake_smi
from tests.helpers import ROOT, TINY, fake_spawn, queue, settled, tiny_sets

runner = CliRunner()


@pytest.fixture
def machine(monkeypatch):
    """Four identical GPUs behind a fake NVML; tests edit the list to change the machine."""
    state = [gpu(i) for i in range(4)]
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(state))
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "AMLTUI_GPU_SOURCE", "AMLTUI_GPU_MAX_UTIL",
                "AMLTUI_GPU_MAX_MEM"):
        monkeypatch.delenv(var, raising=False)
    return state


def uuid(i: int) -> str:
    return gpu(i)["uuid"]


def starts(runs_dir: Path) -> list[dict]:
    lines = (runs_dir / "trace.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "start"]


# ---- visibility -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_restricted_visibility_maps_gpus_positions_to_the_users_gpus(machine, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    plan = local_plan("0", 1, store=Store(tmp_path))
    assert [s.name for s in plan.slots] == ["gpu2"]
    assert plan.slots[0].env["CUDA_VISIBLE_DEVICES"] == uuid(2)  # physical GPU 2, by UUID
    assert plan.slots[0].env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    # The worker really gets it (a real process on the slot's environment).
    store = Store(tmp_path)
    ids = queue(store, 1)
    LocalScheduler(store, ids, plan.slots, spawn=fake_spawn).run(poll=0.05)
    assert [e["gpu"] for e in starts(tmp_path)] == [uuid(2)]
    assert local_plan("1", 1).slots[0].env["CUDA_VISIBLE_DEVICES"] == uuid(3)
    with pytest.raises(GpuError, match=r"no GPU at position 2.*0=gpu2, 1=gpu3.*CUDA_VISIBLE_DEVICES=2,3"):
        local_plan("2", 1)


def test_default_takes_every_visible_gpu_and_empty_visibility_means_cpu(machine, monkeypatch):
    assert [s.name for s in local_plan(None, 1).slots] == ["gpu0", "gpu1", "gpu2", "gpu3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    plan = local_plan(None, 1, cpu_slots=2)
    assert [s.name for s in plan.slots] == ["cpu0", "cpu1"] and plan.slots[0].env["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(GpuError, match="no GPU is visible.*CUDA_VISIBLE_DEVICES is empty.*--gpus none"):
        local_plan("0", 1)


def test_uuids_and_uuid_prefixes_are_found_in_the_users_order(machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{uuid(3)},{uuid(1)[:12]}")
    seen = visible_gpus(inventory()).gpus
    assert [g.label for g in seen] == ["gpu3", "gpu1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in local_plan("0,1", 1).slots] == [uuid(3), uuid(1)]


def test_an_entry_naming_no_gpu_hides_it_and_the_rest_as_cuda_does(machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,GPU-nope,0")
    visible = visible_gpus(inventory())
    assert [g.label for g in visible.gpus] == ["gpu1"]
    assert "'GPU-nope' names no GPU" in visible.note
    assert local_plan(None, 1).notes == [visible.note]


def test_mig_instances_are_devices_and_their_gpu_is_not(machine, monkeypatch):
    machine[1]["migs"] = [{"uuid": "MIG-11111111-2222-3333-4444-555555555555", "used": 100, "total": 10 * GIB},
                          {"uuid": "MIG-66666666-2222-3333-4444-555555555555", "used": 9 * GIB, "total": 10 * GIB}]
    seen = visible_gpus(inventory()).gpus
    assert [g.label for g in seen] == ["gpu0", "gpu2", "gpu3", "gpu1.mig0", "gpu1.mig1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-66666666")
    slot = local_plan("0", 1).slots[0]
    assert slot.name == "gpu1.mig1" and slot.env["CUDA_VISIBLE_DEVICES"] == machine[1]["migs"][1]["uuid"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(GpuError, match="split into MIG instances"):
        local_plan("0", 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"MIG-{uuid(1)}/1/0")  # the old form: not one instance
    with pytest.raises(GpuError, match="old MIG-GPU-"):
        local_plan("0", 1)


def test_mixed_gpus_numeric_visibility_needs_an_explicit_order(machine, monkeypatch):
    # Index 0 is an old GPU on the higher PCI bus: nvidia-smi order and PCI order differ from "fastest first".
    machine[:] = [gpu(0, "Tesla T4", bus="00000000:81:00.0"), gpu(1, "NVIDIA H100"), gpu(2, "NVIDIA H100")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(GpuError, match="ambiguous.*CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        local_plan(None, 1)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # index 0 = lowest PCI bus id = gpu1 here
    slot = local_plan(None, 1).slots[0]
    assert slot.name == "gpu1" and slot.env["CUDA_VISIBLE_DEVICES"] == uuid(1)
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuid(0))  # UUIDs need no order
    assert local_plan(None, 1).slots[0].env["CUDA_VISIBLE_DEVICES"] == uuid(0)


def test_without_any_gpu_source_indices_pass_through_in_the_users_order(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setenv("AMLTUI_GPU_SOURCE", "nvidia-smi")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    slot = local_plan("1", 1).slots[0]
    assert slot.env["CUDA_VISIBLE_DEVICES"] == "7" and slot.env["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


# ---- nvidia-smi fallback ----------------------------------------------------------------------------------
def test_nvidia_smi_fallback_reads_gpus_processes_and_mig(monkeypatch, tmp_path):
    state = [gpu(0, used=30 * GIB, util=97, procs=[(os.getpid(), 30 * GIB, "python")]), gpu(1, util=None)]
    state[1]["migs"] = [{"uuid": "MIG-abcdef01-2222-3333-4444-555555555555"}]
    use_fake_smi(monkeypatch, tmp_path, state)
    found = inventory()
    assert found.source == "nvidia-smi"
    g0, g1, mig = found.gpus
    assert (g0.label, g0.uuid, g0.utilization, g0.memory_used, g0.memory_total) == (
        "gpu0", uuid(0), 97.0, 30 * GIB, 80 * GIB)
    assert g0.processes[0].pid == os.getpid() and g0.processes[0].memory_mib == 30 * GIB
    assert g1.utilization is None and g1.mig_mode  # "[N/A]" is unknown, not 0
    assert mig.label == "gpu1.mig0" and mig.uuid.startswith("MIG-abcdef01")
    assert found.gpus == smi_inventory().gpus


def test_nvml_is_preferred_and_its_processes_are_attributed(machine):
    machine[0].update(used=5 * GIB, procs=[(os.getpid(), 5 * GIB, "python")])
    found = nvml_inventory()
    assert found.source == "nvml" and len(found.gpus) == 4
    proc = found.gpus[0].processes[0]
    assert proc.pid == os.getpid() and proc.memory_mib == 5 * GIB and proc.user != "?"


# ---- busy GPUs --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gpus_auto_skips_a_busy_gpu(machine, tmp_path):
    machine[0].update(util=95)  # someone's training
    machine[1].update(used=60 * GIB)  # someone's idle notebook holding memory
    store = Store(tmp_path)
    ids = queue(store, 4)
    plan = local_plan("auto", 1, store=store)
    LocalScheduler(store, ids, plan.slots, spawn=fake_spawn, admit=plan.gate).run(poll=0.05)
    assert {e["gpu"] for e in starts(tmp_path)} == {uuid(2), uuid(3)}
    assert all(store.get(i)["status"] == "done" for i in ids)


def test_gpus_auto_says_who_uses_the_gpus_when_none_qualifies(machine, tmp_path):
    pid = os.getpid()
    for g in machine:
        g.update(util=100, used=70 * GIB, procs=[(pid, 70 * GIB, "python")])
    with pytest.raises(GpuError) as info:
        local_plan("auto", 1, store=Store(tmp_path))
    text = str(info.value)
    assert "no visible GPU is free" in text and "gpu3" in text and "100% utilised" in text
    assert f"pid {pid} python 70.0 GiB" in text and "--gpu-max-util" in text
    # Thresholds are the user's to choose: busy means at or above them.
    for g in machine:
        g["util"] = 99
    assert local_plan("auto", 1, gpu_max_util=100, gpu_max_mem=90).slots


def test_a_gpu_that_becomes_busy_gets_no_new_runs_and_is_rechecked(machine):
    gate_gpus = visible_gpus(inventory()).gpus[:1]
    slot = SimpleNamespace(name="gpu0")
    gate = GpuGate({"gpu0": gate_gpus[0]}, limits=Thresholds(), busy_check=True, fit_memory=False,
                   footprint=lambda run_id: None, max_age=0)
    assert gate(slot, "r0", {})
    machine[0].update(util=80, procs=[(999999, 2 * GIB, "python")])
    assert not gate(slot, "r1", {})
    assert "80% utilised" in gate.last_refusal["gpu0"]
    machine[0].update(util=0, procs=[])
    assert gate(slot, "r1", {})


def test_our_own_runs_do_not_make_a_gpu_busy(machine):
    me = os.getpid()
    machine[0].update(util=100, used=40 * GIB, procs=[(me, 40 * GIB, "python")])
    gpu0 = inventory().gpus[0]
    assert gpus.busy_reason(gpu0, Thresholds(), [me]) is None
    assert "utilised" in gpus.busy_reason(gpu0, Thresholds(), [])


# ---- memory fit ---------------------------------------------------------------------------------------------
def test_slots_auto_fit_runs_to_the_memory_left(machine, tmp_path):
    machine[:] = [gpu(0, used=20 * GIB, procs=[(4242, 20 * GIB, "python")])]  # someone else's 20 GiB
    gpu0 = inventory().gpus[0]
    need = 10 * GIB  # measured peak of this config
    gate = GpuGate({f"gpu0#{k}": gpu0 for k in range(8)}, limits=Thresholds(), busy_check=True, fit_memory=True,
                   footprint=lambda run_id: need, max_age=0)
    active: dict = {}
    for k in range(8):
        if not gate(SimpleNamespace(name=f"gpu0#{k}"), f"r{k}", active):
            break
        # Started, not yet allocating: the gate must count what it will take.
        active[f"r{k}"] = (SimpleNamespace(name=f"gpu0#{k}"), SimpleNamespace(pid=1000 + k))
    expected = int((80 * GIB * 0.95 - 20 * GIB) // (need + CONTEXT_MIB))
    assert len(active) == expected == 5
    assert "GiB left" in gate.last_refusal["gpu0"]
    # Once the runs allocate, what they hold is not counted twice.
    machine[0]["procs"] += [(1000 + k, need + CONTEXT_MIB, "python") for k in range(5)]
    machine[0]["used"] += 5 * (need + CONTEXT_MIB)
    assert not gate(SimpleNamespace(name="gpu0#5"), "r5", active)
    machine[0]["procs"] = machine[0]["procs"][:-1]  # one run ended
    machine[0]["used"] -= need + CONTEXT_MIB
    del active["r4"]
    assert gate(SimpleNamespace(name="gpu0#4"), "r5", active)


def test_an_unmeasured_config_gets_a_gpu_to_itself(machine):
    gpu0 = inventory().gpus[0]
    gate = GpuGate({"gpu0#0": gpu0, "gpu0#1": gpu0}, limits=Thresholds(), busy_check=False, fit_memory=True,
                   footprint=lambda run_id: None, max_age=0)
    assert gate(SimpleNamespace(name="gpu0#0"), "r0", {})
    active = {"r0": (SimpleNamespace(name="gpu0#0"), SimpleNamespace(pid=1))}
    assert not gate(SimpleNamespace(name="gpu0#1"), "r1", active)
    assert "unmeasured" in gate.last_refusal["gpu0"]


def test_footprint_is_the_peak_recorded_by_a_run_of_the_same_config(tmp_path):
    store = Store(tmp_path)
    ids = queue(store, 3)  # same config, seeds 0-2: one group
    other = create_run(store, RunConfig.resolve("ml_sa", "quick", epochs=1, **TINY), run_id="other")["id"]
    lookup = store_footprint(store, max_age=0)
    assert lookup(ids[1]) is None
    record = store.get(ids[0])
    record["gpu_peak_mib"] = 1234.5
    save_record(store, run_dir(store.runs_dir, ids[0]), record)
    assert lookup(ids[2]) == 1234.5 and lookup(other) is None


@pytest.mark.slow
def test_scheduler_with_slots_auto_runs_an_unmeasured_config_one_at_a_time(machine, tmp_path):
    machine[:] = [gpu(0)]
    store = Store(tmp_path)
    ids = queue(store, 3, fake_seconds=0.3)
    plan = local_plan("0", "auto", store=store)
    assert len(plan.slots) == gpus.AUTO_SLOTS_CAP
    LocalScheduler(store, ids, plan.slots, spawn=fake_spawn, admit=plan.gate).run(poll=0.05)
    events = sorted((e["time"], e["event"]) for e in map(json.loads, (tmp_path / "trace.jsonl").read_text()
                                                             .splitlines()))
    depth = peak = 0
    for _, kind in events:
        depth += 1 if kind == "start" else -1
        peak = max(peak, depth)
    assert peak == 1 and all(store.get(i)["status"] == "done" for i in ids)


# ---- CLI --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gpus_command_lists_what_amltui_sees(monkeypatch, tmp_path):
    state = [gpu(0, "NVIDIA [RTX] 6000"), gpu(1),
             gpu(2, util=99, used=50 * GIB, procs=[(os.getpid(), 50 * GIB, "python")])]
    use_fake_smi(monkeypatch, tmp_path, state)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # mixed GPUs: indices need an explicit order
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["gpus"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row0 = next(line for line in lines if "gpu2" in line)
    assert row0.split()[0] == "0" and uuid(2) in row0 and "50.0/80.0" in row0 and "99%" in row0 and "busy" in row0
    assert f"pid {os.getpid()} python" in result.output
    assert "NVIDIA [RTX] 6000" in result.output  # shown verbatim, not eaten as markup
    data = json.loads(runner.invoke(app, ["gpus", "--json"]).output)
    assert [g["label"] for g in data["gpus"]] == ["gpu2", "gpu0"] and data["source"] == "nvidia-smi"


def test_gpus_command_shows_the_gpus_when_visibility_is_ambiguous(machine, monkeypatch):
    machine[0]["name"] = "Tesla T4"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    result = runner.invoke(app, ["gpus"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "ambiguous" in result.output
    assert all(f"gpu{i}" in result.output for i in range(4)) and uuid(3) in result.output


def test_gpus_command_without_a_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("AMLTUI_GPU_SOURCE", "nvidia-smi")
    result = runner.invoke(app, ["gpus"])
    assert result.exit_code == 0 and "no GPU visible (nvidia-smi not found on PATH)" in result.output


@pytest.mark.slow
def test_run_with_restricted_visibility_runs_on_physical_gpu_2(monkeypatch, tmp_path):
    """End to end: `CUDA_VISIBLE_DEVICES=2,3 amltui run --gpus 0` with a real worker; the record names gpu2."""
    use_fake_smi(monkeypatch, tmp_path, [gpu(i) for i in range(4)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--variants", "baseline", "--dataset", "synthetic", "--epochs", "1",
                                 "--gpus", "0", "--runs-dir", str(runs), "--id", "g2",
                                 *tiny_sets()])
    assert result.exit_code == 0, result.output
    record = Store(runs).get("g2")
    assert record["status"] == "done" and record["slot"] == "gpu2"
    assert record["gpu"] == "gpu2" and record["gpu_uuid"] == uuid(2)
    assert record["device"] == "cpu"  # the fake GPU is not a real one: torch finds no CUDA device


def test_ls_shows_the_gpu_of_running_runs(tmp_path):
    store = Store(tmp_path)
    ids = queue(store, 2)
    record = store.get(ids[0])
    record.update(status="running", gpu="gpu2", slot="gpu2", pid=os.getpid())
    save_record(store, run_dir(store.runs_dir, ids[0]), record)
    result = runner.invoke(app, ["ls", "--runs-dir", str(tmp_path)], env={"COLUMNS": "160"})
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["id"][:4] == ["id", "status", "progress", "gpu"]
    assert rows["r0"][:4] == ["r0", "running", "0/1", "gpu2"]
    assert rows["r1"][:4] == ["r1", "queued", "0/1", "baseline"]  # not running: no GPU shown


def test_bad_gpu_options_are_user_errors(machine, tmp_path):
    for args, message in ((["--gpus", "x"], "--gpus 'x'"), (["--slots-per-gpu", "0"], "--slots-per-gpu '0'"),
                          (["--gpus", "auto", "--gpu-max-util", "150"], "not a percentage")):
        result = runner.invoke(app, ["run", "--runs-dir", str(tmp_path), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    for g in machine:
        g.update(util=100, procs=[(os.getpid(), 1 * GIB, "python")])
    result = runner.invoke(app, ["run", "--runs-dir", str(tmp_path), "--gpus", "auto"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "no visible GPU is free" in result.output and "100% utilised" in result.output
    assert Store(tmp_path).all() == []  # refused before anything was queued


def test_inventory_problem_is_reported_when_nothing_is_found(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.delenv("AMLTUI_GPU_SOURCE", raising=False)
    found = inventory()
    assert found.gpus == [] and "nvidia-ml-py" in found.problem and "nvidia-smi not found" in found.problem
    assert isinstance(Inventory(), Inventory)


@pytest.mark.slow
def test_fake_smi_script_runs_standalone(tmp_path):
    bin_dir = install_fake_smi(tmp_path, [gpu(0)])
    out = subprocess.run([str(bin_dir / "nvidia-smi"), "-L"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("GPU 0: NVIDIA A100")


# ---- dashboard strip ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dashboard_gpu_strip_at_80x24(machine, monkeypatch, tmp_path):
    import asyncio

    from amltui.tui.dashboard import DashboardApp
    from amltui.tui.demo import seed_demo
    from amltui.tui.widgets.gpu_strip import GpuStrip
    from tests.helpers import SIZE, ready, screen_text, wait_for

    monkeypatch.chdir(tmp_path)
    seed_demo(Path("runs"))
    store = Store(Path("runs"))
    record = store.get("ml_sa_ia-s0-demo")
    record.update(slot="gpu1", gpu="gpu1")
    save_record(store, run_dir(store.runs_dir, record["id"]), record)
    machine[:] = [gpu(0, util=0, used=1 * GIB), gpu(1, util=87, used=23.6 * GIB), gpu(2, util=None)]

    async def main() -> None:
        app = DashboardApp(Path("runs"), poll_interval=0.2, detail_interval=0.3)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            strip = screen.query_one(GpuStrip)
            await wait_for(pilot, lambda: screen.gpus_loaded and strip.display and "ml_sa_ia" in strip.text,
                           what="the GPU strip")
            await settled(pilot)
            text = screen_text(app).splitlines()
            assert text[1].split() == ["gpu0", "0%", "1/80G", "-", "gpu1", "87%▇", "24/80G", "ml_sa_ia-s0-demo"]
            assert text[2].split() == ["gpu2", "?%", "0/80G", "-"]
            assert "run" in text[3] and "status" in text[3]  # the table follows, all 7 runs still on screen
            assert "baseline-s2-demo" in "\n".join(text)
            # A GPU that disappears (driver gone, visibility changed) takes the strip away.
            machine.clear()
            n = screen.gpus_loaded
            screen._read_gpus()
            await wait_for(pilot, lambda: screen.gpus_loaded > n, what="a GPU read")
            await settled(pilot)
            assert not strip.display and screen_text(app).splitlines()[1].split()[:2] == ["run", "status"]

    asyncio.run(main())


def test_strip_packs_gpus_and_caps_its_height():
    from amltui.tui.widgets.gpu_strip import MAX_LINES, render_strip, runs_by_gpu

    many = [gpus.Gpu(index=i, uuid=uuid(i), memory_used=0, memory_total=80 * GIB, utilization=5) for i in range(8)]
    runs = runs_by_gpu([{"id": "a", "status": "running", "gpu": "gpu3"},
                        {"id": "b", "status": "running", "slot": "gpu3#1"},
                        {"id": "c", "status": "done", "gpu": "gpu3"}, {"id": "d", "status": "running", "slot": "cpu0"}])
    assert runs == {"gpu3": ["a", "b"]}
    lines = render_strip(many, runs, 78).splitlines()
    assert len(lines) == MAX_LINES and "+4 more GPUs" in lines[-1]
    assert "a,b" in lines[1]


# ---- determinism ------------------------------------------------------------------------------------------
def test_deterministic_config_sets_torch_cudnn_and_cublas(monkeypatch):
    import torch

    from core.device import CUBLAS_WORKSPACE, set_deterministic

    plain = RunConfig.resolve("baseline", "quick")
    strict = RunConfig.resolve("baseline", "quick", overrides=["deterministic=true"])
    assert strict.deterministic and not plain.deterministic
    assert strict.group_key() == plain.group_key()  # same science: pooled with the others
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    try:
        set_deterministic(False)
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and not torch.are_deterministic_algorithms_enabled()
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]


def test_detached_scheduler_that_cannot_plan_fails_its_runs_with_the_reason(machine, tmp_path, capsys):
    from amltui.app.executors import local

    store = Store(tmp_path)
    ids = queue(store, 1)
    assert local.main(["--runs-dir", str(tmp_path), "--gpus", "5", *ids]) == 2
    record = store.get(ids[0])
    assert record["status"] == "failed" and "no GPU at position 5" in record["error"]
    assert "cannot schedule" in capsys.readouterr().out
