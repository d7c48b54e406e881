"""Stand-ins for a GPU machine: a fake NVML module (for monkeypatching ``pynvml``) and a fake ``nvidia-smi``.

Both read one description of the machine: a list of dicts with index, uuid, name, bus (PCI bus id), used and
total (MiB), util (%), procs [(pid, MiB, name)], and optionally migs [{uuid, used, total}].
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types
from pathlib import Path
from typing import Any

GIB = 1024


def gpu(index: int, name: str = "NVIDIA A100-SXM4-80GB", *, used: float = 0, total: float = 80 * GIB,
        util: float = 0, procs: list[tuple[int, float, str]] | None = None, bus: str | None = None,
        migs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"index": index, "uuid": f"GPU-{index:08x}-aaaa-bbbb-cccc-{index:012x}", "name": name,
            "bus": bus or f"00000000:{0x10 + index:02X}:00.0", "used": used, "total": total, "util": util,
            "procs": procs or [], "migs": migs}


class _NVMLError(Exception):
    pass


def fake_nvml(machine: list[dict[str, Any]]) -> types.ModuleType:
    """A module with the pynvml functions amltui.app.gpus calls, answering from ``machine`` (read at each call,
    so a test can change the machine while a scheduler runs)."""
    mod = types.ModuleType("pynvml")
    ns = types.SimpleNamespace

    def device(handle: tuple) -> dict[str, Any]:
        kind, i, k = handle
        d = machine[i]
        return d if kind == "gpu" else {**d["migs"][k], "procs": d["migs"][k].get("procs", []), "util": None}

    def not_supported() -> None:
        raise _NVMLError("Not Supported")

    mod.nvmlInit = lambda: None
    mod.nvmlShutdown = lambda: None
    mod.nvmlDeviceGetCount = lambda: len(machine)
    mod.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i, None)
    mod.nvmlDeviceGetMigMode = lambda h: (1, 1) if machine[h[1]].get("migs") else (0, 0)
    mod.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
    mod.nvmlDeviceGetMigDeviceHandleByIndex = (
        lambda h, k: ("mig", h[1], k) if k < len(machine[h[1]]["migs"]) else not_supported())
    mod.nvmlDeviceGetUUID = lambda h: device(h)["uuid"]
    mod.nvmlDeviceGetName = lambda h: machine[h[1]]["name"]
    mod.nvmlDeviceGetPciInfo = lambda h: ns(busId=machine[h[1]]["bus"].encode())
    mod.nvmlDeviceGetMemoryInfo = lambda h: ns(used=int(device(h)["used"] * 2**20),
                                               total=int(device(h)["total"] * 2**20))

    def util(h: tuple) -> Any:
        value = device(h)["util"]
        return not_supported() if value is None else ns(gpu=value, memory=0)

    mod.nvmlDeviceGetUtilizationRates = util
    mod.nvmlDeviceGetComputeRunningProcesses = lambda h: [ns(pid=p, usedGpuMemory=int(m * 2**20))
                                                          for p, m, _ in device(h)["procs"]]
    mod.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    return mod


SMI = '''#!{python}
"""Fake nvidia-smi: answers the queries amltui makes from {state}."""
import json, sys
machine = json.load(open({state!r}))
args = sys.argv[1:]
def num(v):
    return "[N/A]" if v is None else str(int(v))
if args and args[0].startswith("--query-gpu="):
    for d in machine:
        print(", ".join([str(d["index"]), d["uuid"], d["name"], d["bus"], num(d["used"]), num(d["total"]),
                         num(d["util"])]))
elif args and args[0].startswith("--query-compute-apps="):
    for d in machine:
        for pid, mib, name in d["procs"]:
            print(f"{{d['uuid']}}, {{pid}}, {{int(mib)}}, {{name}}")
elif args == ["-L"]:
    for d in machine:
        print(f"GPU {{d['index']}}: {{d['name']}} (UUID: {{d['uuid']}})")
        for k, m in enumerate(d.get("migs") or []):
            print(f"  MIG 1g.10gb     Device  {{k}}: (UUID: {{m['uuid']}})")
else:
    sys.exit("fake nvidia-smi: unexpected arguments " + " ".join(args))
'''


def install_fake_smi(folder: Path, machine: list[dict[str, Any]]) -> Path:
    """Write ``folder``/bin/nvidia-smi answering from ``machine``; returns the bin folder (put it on PATH)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state = folder / "machine.json"
    state.write_text(json.dumps(machine))
    script = bin_dir / "nvidia-smi"
    script.write_text(SMI.format(python=sys.executable, state=str(state)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def use_fake_smi(monkeypatch: Any, folder: Path, machine: list[dict[str, Any]]) -> None:
    """Make nvidia-smi the only GPU source of this process and of its children, answering from ``machine``."""
    bin_dir = install_fake_smi(folder, machine)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("AMLTUI_GPU_SOURCE", "nvidia-smi")
