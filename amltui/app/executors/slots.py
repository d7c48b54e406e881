"""Slots on this machine: which GPUs (or CPU slots) the local scheduler may run workers in, each with the
environment of its worker, and the plan `--gpus` / `--slots-per-gpu` make of them (with a GPU gate for auto)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from amltui.app.gpus import (
    AUTO_SLOTS_CAP,
    AUTO_THREADS_SHARE,
    Gpu,
    GpuError,
    GpuGate,
    Thresholds,
    busy_reason,
    inventory,
    no_gpu_qualifies,
    parse_gpu_spec,
    parse_slots,
    store_footprint,
    threads_per_slot,
    visible_gpus,
)
from amltui.app.runs.store import Store


@dataclass(frozen=True)
class Slot:
    name: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def gpu(self) -> str | None:
        return self.env.get("CUDA_VISIBLE_DEVICES")


def parse_gpus(text: str | None) -> str | list[int] | None:
    """'0,1' → [0, 1] (positions in the visible list); None/'' → None (all visible); 'none' → []; 'auto'."""
    return parse_gpu_spec(text)


def make_slots(gpus: Sequence[int | Gpu], slots_per_gpu: int | None = 1, cpu_slots: int = 1,
               cores: int | None = None) -> list[Slot]:
    """Slots for these GPUs (or CPU slots when there are none), each with the environment of its worker.

    A GPU worker sees its one device by UUID when known (the same physical GPU whatever CUDA_DEVICE_ORDER
    says), else by the index the user gave, in the user's own device order. ``slots_per_gpu`` None = auto
    (up to AUTO_SLOTS_CAP, admitted one by one by a GpuGate). Every worker gets cores / slots intra-op threads.
    """
    if (slots_per_gpu is not None and slots_per_gpu < 1) or cpu_slots < 1:
        raise ValueError("--slots-per-gpu and --cpu-slots must be at least 1")
    if gpus:
        devices = [g if isinstance(g, Gpu) else Gpu(index=g) for g in gpus]
        per_gpu = AUTO_SLOTS_CAP if slots_per_gpu is None else slots_per_gpu
        threads = threads_per_slot(len(devices) * (AUTO_THREADS_SHARE if slots_per_gpu is None else per_gpu), cores)
        order = ("PCI_BUS_ID" if all(d.uuid for d in devices)
                 else os.environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST"))
        return [Slot(d.label + (f"#{k}" if per_gpu > 1 else ""),
                     {"CUDA_VISIBLE_DEVICES": d.env_id, "CUDA_DEVICE_ORDER": order, "AMLTUI_GPU": d.label,
                      "AMLTUI_THREADS": str(threads)})
                for d in devices for k in range(per_gpu)]
    threads = threads_per_slot(cpu_slots, cores)
    # An empty CUDA_VISIBLE_DEVICES hides every GPU: CPU slots must not grab one by accident.
    return [Slot(f"cpu{k}", {"CUDA_VISIBLE_DEVICES": "", "AMLTUI_THREADS": str(threads)}) for k in range(cpu_slots)]


def default_cpu_slots() -> int:
    """One CPU slot per 8 cores, at least one: small machines run one job at a time with every core."""
    return max(1, len(os.sched_getaffinity(0)) // 8)


@dataclass
class LocalPlan:
    slots: list[Slot]
    gate: GpuGate | None = None  # re-checks GPUs before each dispatch (--gpus auto, --slots-per-gpu auto)
    notes: list[str] = field(default_factory=list)  # for the user: ignored CUDA_VISIBLE_DEVICES entries


def local_plan(gpus: str | None, slots_per_gpu: str | int | None = 1, cpu_slots: int | None = None, *,
               store: Store | None = None, gpu_max_util: float | None = None, gpu_max_mem: float | None = None,
               require_free: bool = True, log: Callable[[str], None] | None = None) -> LocalPlan:
    """The slots for ``--gpus`` (positions in the visible GPUs; None: all; 'auto': the free ones; 'none': CPU)
    × ``--slots-per-gpu`` (a count or 'auto'), or CPU slots. Raises GpuError (a ValueError) for what the user
    must fix, e.g. when ``require_free`` and no GPU qualifies for --gpus auto."""
    spec = parse_gpu_spec(gpus)
    per_gpu = parse_slots(slots_per_gpu)
    limits = Thresholds.from_env(gpu_max_util, gpu_max_mem)
    cpu = cpu_slots or default_cpu_slots()
    if spec == []:
        return LocalPlan(make_slots([], 1, cpu))
    inv = inventory()
    visible = visible_gpus(inv)
    notes = [visible.note] if visible.note else []
    why = visible.note or inv.problem or "none found"
    if spec is None:
        chosen = visible.gpus
    elif not visible.gpus:
        raise GpuError(f"--gpus {gpus}: no GPU is visible ({why}); use --gpus none to run on CPU")
    elif spec == "auto":
        chosen = visible.gpus
        if require_free and all(busy_reason(g, limits) for g in chosen):
            raise GpuError(no_gpu_qualifies(chosen, limits))
    else:
        missing = [p for p in spec if p >= len(visible.gpus)]
        if missing:
            cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
            seen = ", ".join(f"{k}={g.label}" for k, g in enumerate(visible.gpus))
            raise GpuError(f"--gpus {gpus}: no GPU at position {', '.join(map(str, missing))}; --gpus counts "
                           f"positions in the visible GPUs ({seen}"
                           + (f"; CUDA_VISIBLE_DEVICES={cvd}" if cvd is not None else "") + "); see `amltui gpus`")
        chosen = [visible.gpus[p] for p in spec]
    if not chosen:
        return LocalPlan(make_slots([], 1, cpu), notes=notes)
    slots = make_slots(chosen, per_gpu, cpu)
    gate = None
    if spec == "auto" or per_gpu is None:
        by_label = {g.label: g for g in chosen}
        gate = GpuGate({s.name: by_label[s.env["AMLTUI_GPU"]] for s in slots}, limits=limits,
                       busy_check=spec == "auto", fit_memory=per_gpu is None,
                       footprint=store_footprint(store) if store is not None else (lambda run_id: None), log=log)
    return LocalPlan(slots, gate, notes)


def local_slots(gpus: str | None, slots_per_gpu: str | int | None = 1, cpu_slots: int | None = None) -> list[Slot]:
    """The slots of :func:`local_plan`."""
    return local_plan(gpus, slots_per_gpu, cpu_slots).slots
