"""The GPUs of this machine as amltui sees them, and which of them may take a run now.

Inventory comes from NVML (``nvidia-ml-py``), else from ``nvidia-smi --query-gpu … --format=csv``; both give
every GPU of the machine with its NVML index (nvidia-smi's), UUID and PCI bus id. The user's
``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-…`` UUIDs, ``MIG-…`` ids, empty) is resolved against it into the list
of visible devices, and ``--gpus 0,1`` are positions in that list. Workers get the device by UUID, which names
the same physical GPU whatever CUDA_DEVICE_ORDER says. See docs/gpus.md, "GPUs on shared servers".
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any

MIB = 1024 * 1024
# Defaults of `--gpus auto`: a GPU is busy from this utilisation (%) or this share of its memory (%) in use by
# processes that are not amltui's runs. Overridable with --gpu-max-util / --gpu-max-mem or the environment.
MAX_UTIL_DEFAULT = 20.0
MAX_MEM_DEFAULT = 30.0
# What a CUDA worker uses beyond torch's own allocations (context, kernels, cuDNN/cuBLAS workspaces), MiB.
CONTEXT_MIB = 600
# `--slots-per-gpu auto`: at most this many runs per GPU; threads per worker assume this many.
AUTO_SLOTS_CAP = 8
AUTO_THREADS_SHARE = 4
NVML_TIMEOUT = 20


class GpuError(ValueError):
    """The user's GPU settings cannot be honoured (the message says why and what to do)."""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    memory_mib: float | None = None
    name: str = ""
    user: str = "?"


@dataclass(frozen=True)
class Gpu:
    """A device a worker can be given: a whole GPU or a MIG instance (``parent`` = its GPU's index)."""

    index: int
    uuid: str = ""
    name: str = ""
    pci_bus_id: str = ""
    memory_used: float | None = None  # MiB
    memory_total: float | None = None  # MiB
    utilization: float | None = None  # %, None where NVML cannot tell (MIG instances)
    processes: tuple[GpuProcess, ...] = ()
    parent: int | None = None
    mig_mode: bool = False  # a whole GPU split into MIG instances (run on those, not on it)

    @property
    def label(self) -> str:
        """gpuN (nvidia-smi's index N) or gpuN.migK; also the slot name and the lock name."""
        if self.parent is not None:
            return f"gpu{self.parent}.mig{self.index}"
        if self.index < 0:  # a UUID that could not be looked up (no NVML, no nvidia-smi)
            return self.uuid[:12].lower()
        return f"gpu{self.index}"

    @property
    def env_id(self) -> str:
        """What the worker's CUDA_VISIBLE_DEVICES holds: the UUID when known, else the index."""
        return self.uuid or str(self.index)


@dataclass
class Inventory:
    gpus: list[Gpu] = field(default_factory=list)  # whole GPUs then MIG instances, nvidia-smi order
    source: str = "none"  # "nvml", "nvidia-smi" or "none"
    problem: str = ""  # why nothing was found

    @property
    def whole(self) -> list[Gpu]:
        return [g for g in self.gpus if g.parent is None]


# ---- inventory ----------------------------------------------------------------------------------------
def _owner(pid: int) -> str:
    try:
        return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    except (OSError, KeyError):
        return "?"  # another PID namespace (containers) or already gone


def _proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_inventory(nvml: Any = None) -> Inventory:
    """Every GPU (and MIG instance) through NVML; ``nvml`` is the pynvml module (tests pass a fake)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return Inventory(problem="nvidia-ml-py is not installed")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return Inventory(problem=f"NVML: {exc}")
    try:
        gpus: list[Gpu] = []
        migs: list[Gpu] = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            gpu = _nvml_device(nvml, handle, i)
            try:
                mig_on = nvml.nvmlDeviceGetMigMode(handle)[0] == 1
            except Exception:
                mig_on = False
            if mig_on:
                gpu = replace(gpu, mig_mode=True)
                for k in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                    try:
                        mig_handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
                    except Exception:
                        continue  # an empty MIG slot
                    migs.append(replace(_nvml_device(nvml, mig_handle, k, gpu.name), parent=i,
                                        pci_bus_id=gpu.pci_bus_id))
            gpus.append(gpu)
        return Inventory(gpus + migs, source="nvml")
    except Exception as exc:
        return Inventory(problem=f"NVML: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_device(nvml: Any, handle: Any, index: int, name: str = "") -> Gpu:
    def get(fn: str, *args: Any) -> Any:
        try:
            return getattr(nvml, fn)(handle, *args)
        except Exception:
            return None

    memory = get("nvmlDeviceGetMemoryInfo")
    rates = get("nvmlDeviceGetUtilizationRates")
    pci = get("nvmlDeviceGetPciInfo")
    procs: dict[int, GpuProcess] = {}
    for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        for p in get(fn) or []:
            used = getattr(p, "usedGpuMemory", None)
            procs[p.pid] = GpuProcess(p.pid, used / MIB if used else None, _proc_name(p.pid), _owner(p.pid))
    return Gpu(
        index=index, uuid=_text(get("nvmlDeviceGetUUID") or ""), name=_text(get("nvmlDeviceGetName") or name),
        pci_bus_id=_text(getattr(pci, "busId", "") or "").lower(),
        memory_used=memory.used / MIB if memory else None, memory_total=memory.total / MIB if memory else None,
        utilization=float(rates.gpu) if rates is not None else None, processes=tuple(procs.values()),
    )


def _smi(args: list[str]) -> str:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=NVML_TIMEOUT,
                          check=True).stdout


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


MIG_LINE = re.compile(r"^\s+MIG\s.*Device\s+(\d+):\s*\(UUID:\s*(MIG-[^)\s]+)\)")
GPU_LINE = re.compile(r"^GPU\s+(\d+):")


def smi_inventory() -> Inventory:
    """Every GPU through ``nvidia-smi --query-gpu=… --format=csv`` (MIG instances from ``nvidia-smi -L``)."""
    if shutil.which("nvidia-smi") is None:
        return Inventory(problem="nvidia-smi not found on PATH")
    try:
        out = _smi(["--query-gpu=index,uuid,name,pci.bus_id,memory.used,memory.total,utilization.gpu",
                    "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError) as exc:
        return Inventory(problem=f"nvidia-smi failed: {exc}")
    gpus: list[Gpu] = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 7 or not parts[0].isdigit():
            continue
        gpus.append(Gpu(index=int(parts[0]), uuid=parts[1], name=parts[2], pci_bus_id=parts[3].lower(),
                        memory_used=_number(parts[4]), memory_total=_number(parts[5]),
                        utilization=_number(parts[6])))
    procs: dict[str, list[GpuProcess]] = {}
    try:
        apps = _smi(["--query-compute-apps=gpu_uuid,pid,used_memory,process_name", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        apps = ""
    for line in apps.splitlines():
        parts = [p.strip() for p in line.split(",", 3)]
        if len(parts) == 4 and parts[1].isdigit():
            pid = int(parts[1])
            procs.setdefault(parts[0], []).append(GpuProcess(pid, _number(parts[2]), parts[3], _owner(pid)))
    gpus = [replace(g, processes=tuple(procs.get(g.uuid, ()))) for g in gpus]
    migs: list[Gpu] = []
    try:
        listing = _smi(["-L"])
    except (OSError, subprocess.SubprocessError):
        listing = ""
    parent: Gpu | None = None
    by_index = {g.index: g for g in gpus}
    for line in listing.splitlines():
        if m := GPU_LINE.match(line):
            parent = by_index.get(int(m.group(1)))
        elif (m := MIG_LINE.match(line)) and parent is not None:
            migs.append(Gpu(index=int(m.group(1)), uuid=m.group(2), name=parent.name, parent=parent.index,
                            pci_bus_id=parent.pci_bus_id))
    mig_parents = {m.parent for m in migs}
    gpus = [replace(g, mig_mode=g.index in mig_parents) for g in gpus]
    return Inventory(gpus + migs, source="nvidia-smi")


def inventory() -> Inventory:
    """NVML first, nvidia-smi as fallback; an empty inventory says why in ``problem``.

    AMLTUI_GPU_SOURCE=nvml or nvidia-smi uses that source alone (e.g. where NVML misbehaves)."""
    source = os.environ.get("AMLTUI_GPU_SOURCE", "").strip().lower()
    if source == "nvidia-smi":
        return smi_inventory()
    found = nvml_inventory()
    if found.gpus or source == "nvml":
        return found
    fallback = smi_inventory()
    if fallback.gpus:
        return fallback
    return Inventory(problem="; ".join(p for p in (found.problem, fallback.problem) if p) or "no GPU found")


# ---- CUDA_VISIBLE_DEVICES -------------------------------------------------------------------------------
@dataclass
class Visible:
    gpus: list[Gpu]
    note: str = ""  # what was ignored, for the user


def visible_gpus(inv: Inventory, env: Mapping[str, str] | None = None) -> Visible:
    """The devices a CUDA program started from ``env`` would see, in its order, resolved to physical GPUs.

    Follows CUDA's rules: unset = every device; empty = none; entries are indices (in CUDA_DEVICE_ORDER),
    GPU-/MIG- UUIDs or unique UUID prefixes; parsing stops at the first entry that names no device.
    """
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    usable = [g for g in inv.gpus if not g.mig_mode]
    if raw is None:
        return Visible(usable)
    entries = [e.strip() for e in raw.split(",")]
    if raw.strip() == "":
        return Visible([], "CUDA_VISIBLE_DEVICES is empty: no GPU is visible")
    order = env.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST").upper()
    whole = sorted(inv.whole, key=lambda g: (g.pci_bus_id, g.index))
    result: list[Gpu] = []
    for k, entry in enumerate(entries):
        gpu = _resolve_entry(entry, inv, whole, order)
        if gpu is None:
            rest = ",".join(entries[k:])
            return Visible(result, f"CUDA_VISIBLE_DEVICES={raw!r}: {entry!r} names no GPU of this machine; "
                                   f"like CUDA, amltui ignores it and what follows ({rest})")
        if gpu.mig_mode:
            raise GpuError(f"CUDA_VISIBLE_DEVICES entry {entry!r} is {gpu.label}, which is split into MIG "
                           "instances; name the instances by their MIG- UUIDs (see `amltui gpus`)")
        if gpu not in result:
            result.append(gpu)
    return Visible(result)


def _resolve_entry(entry: str, inv: Inventory, whole: list[Gpu], order: str) -> Gpu | None:
    if entry.isdigit():
        index = int(entry)
        if not inv.gpus:  # nothing to resolve against: pass the index on as the user wrote it
            return Gpu(index=index)
        if index >= len(whole):
            return None
        if order != "PCI_BUS_ID" and len({g.name for g in whole}) > 1:
            raise GpuError(
                f"CUDA_VISIBLE_DEVICES={entry!r} is ambiguous on this machine of mixed GPUs "
                f"({', '.join(sorted({g.name for g in whole}))}): CUDA numbers them fastest first unless "
                "CUDA_DEVICE_ORDER=PCI_BUS_ID. Export CUDA_DEVICE_ORDER=PCI_BUS_ID (then indices are "
                "nvidia-smi's) or list GPU UUIDs (`amltui gpus` shows them)")
        return whole[index]  # identical GPUs: both orders are PCI bus order
    if entry.startswith(("GPU-", "MIG-")):
        if not inv.gpus:
            return Gpu(index=-1, uuid=entry)
        matches = [g for g in inv.gpus if g.uuid.startswith(entry)]
        if entry.startswith("MIG-GPU-"):  # the pre-R470 form MIG-GPU-<uuid>/<gi>/<ci>
            matches = [g for g in inv.gpus if g.parent is not None and entry.startswith(f"MIG-{_parent_uuid(inv, g)}")]
            if len(matches) > 1:
                raise GpuError(f"CUDA_VISIBLE_DEVICES entry {entry!r} uses the old MIG-GPU-…/GI/CI form, which amltui "
                               "cannot map to one instance; use the MIG-… UUIDs that `nvidia-smi -L` lists")
        return matches[0] if len(matches) == 1 else None
    return None


def _parent_uuid(inv: Inventory, mig: Gpu) -> str:
    return next((g.uuid for g in inv.whole if g.index == mig.parent), "?")


# ---- --gpus / --slots-per-gpu ---------------------------------------------------------------------------
def parse_gpu_spec(text: str | None) -> str | list[int] | None:
    """'0,1' → [0, 1] (positions in the visible list); None/'' → None (all visible); 'none' → []; 'auto'."""
    if text is None or text.strip() == "":
        return None
    low = text.strip().lower()
    if low in ("none", "cpu"):
        return []
    if low == "auto":
        return "auto"
    try:
        positions = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GpuError(f"--gpus {text!r}: give GPU positions separated by commas, e.g. 0,1, or auto or none") from None
    if any(p < 0 for p in positions) or len(set(positions)) != len(positions):
        raise GpuError(f"--gpus {text!r}: positions must be distinct and ≥ 0")
    return positions


def parse_slots(text: str | int | None) -> int | None:
    """--slots-per-gpu: a count ≥ 1, or 'auto' → None (fit runs to memory)."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise GpuError(f"--slots-per-gpu {text!r}: give a number ≥ 1 or auto") from None
    if value < 1:
        raise GpuError(f"--slots-per-gpu {text!r}: give a number ≥ 1 or auto")
    return value


@dataclass(frozen=True)
class Thresholds:
    max_util: float = MAX_UTIL_DEFAULT
    max_mem: float = MAX_MEM_DEFAULT

    @classmethod
    def from_env(cls, max_util: float | None = None, max_mem: float | None = None) -> Thresholds:
        """Explicit values, else AMLTUI_GPU_MAX_UTIL / AMLTUI_GPU_MAX_MEM, else the defaults."""
        def pick(value: float | None, var: str, default: float) -> float:
            if value is None and os.environ.get(var):
                try:
                    value = float(os.environ[var])
                except ValueError:
                    raise GpuError(f"{var}={os.environ[var]!r} is not a number (a percentage, 0-100)") from None
            value = default if value is None else value
            if not 0 <= value <= 100:
                raise GpuError(f"GPU threshold {value} is not a percentage in [0, 100]")
            return value

        return cls(pick(max_util, "AMLTUI_GPU_MAX_UTIL", MAX_UTIL_DEFAULT),
                   pick(max_mem, "AMLTUI_GPU_MAX_MEM", MAX_MEM_DEFAULT))


def busy_reason(gpu: Gpu, limits: Thresholds, own_pids: Sequence[int] = ()) -> str | None:
    """Why ``gpu`` counts as busy for new runs, or None. Only other people's use counts: amltui's own workers'
    memory is subtracted, and utilisation is not judged while one of them runs there (it cannot be split)."""
    own = [p for p in gpu.processes if p.pid in own_pids]
    if not own and gpu.utilization is not None and gpu.utilization >= limits.max_util:
        return f"{gpu.utilization:.0f}% utilised (limit {limits.max_util:g}%)"
    if gpu.memory_used is not None and gpu.memory_total:
        others = gpu.memory_used - sum(p.memory_mib or 0 for p in own)
        share = 100 * others / gpu.memory_total
        if share >= limits.max_mem:
            return (f"{others / 1024:.1f}/{gpu.memory_total / 1024:.1f} GiB in use ({share:.0f}%, "
                    f"limit {limits.max_mem:g}%)")
    return None


def describe_use(gpu: Gpu, own_pids: Sequence[int] = ()) -> str:
    """'alice pid 4242 python 30.1 GiB, …' for the processes that are not amltui's."""
    others = [p for p in gpu.processes if p.pid not in own_pids]
    if not others:
        return "no process listed" if gpu.processes or gpu.uuid else "processes unknown"
    return ", ".join(f"{p.user} pid {p.pid}" + (f" {p.name}" if p.name else "")
                     + (f" {p.memory_mib / 1024:.1f} GiB" if p.memory_mib else "") for p in others)


def no_gpu_qualifies(gpus: Sequence[Gpu], limits: Thresholds) -> str:
    lines = ["--gpus auto: no visible GPU is free enough for a new run:"]
    for gpu in gpus:
        lines.append(f"  {gpu.label} ({gpu.name or '?'}): {busy_reason(gpu, limits)}; used by {describe_use(gpu)}")
    lines.append("Wait for them, raise --gpu-max-util / --gpu-max-mem, or name GPUs with --gpus 0,1.")
    return "\n".join(lines)


# ---- admission before each dispatch ---------------------------------------------------------------------
Footprint = Callable[[str], float | None]


@dataclass
class GpuGate:
    """Decides, just before a run is handed to a free GPU slot, whether that GPU may take it now.

    ``busy_check`` (--gpus auto) skips GPUs that others are using; ``fit_memory`` (--slots-per-gpu auto) admits
    a run only when its measured footprint (``footprint(run_id)``, MiB, None = not measured yet) fits in the
    memory left, counting what amltui's runs already there will still take. An unmeasured run gets a GPU to itself.
    """

    slot_gpus: Mapping[str, Gpu]
    _: KW_ONLY
    limits: Thresholds
    busy_check: bool
    fit_memory: bool
    footprint: Footprint
    read: Callable[[], Inventory] = inventory
    max_age: float = 1.0
    log: Callable[[str], None] | None = None
    _cache: tuple[float, dict[str, Gpu]] | None = field(default=None, init=False)
    last_refusal: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.slot_gpus = dict(self.slot_gpus)

    def _current(self) -> dict[str, Gpu]:
        if self._cache is None or time.monotonic() - self._cache[0] > self.max_age:
            inv = self.read()
            self._cache = (time.monotonic(), {g.uuid: g for g in inv.gpus if g.uuid})
        return self._cache[1]

    def __call__(self, slot: Any, run_id: str, active: Mapping[str, tuple[Any, Any]]) -> bool:
        gpu = self.slot_gpus.get(slot.name)
        if gpu is None:
            return True  # a CPU slot
        now_gpu = self._current().get(gpu.uuid, gpu)
        mine = {rid: proc.pid for rid, (s, proc) in active.items() if self.slot_gpus.get(s.name) == gpu}
        reason = busy_reason(now_gpu, self.limits, list(mine.values())) if self.busy_check else None
        if reason is None and self.fit_memory:
            reason = self._no_room(now_gpu, run_id, mine)
        if reason != self.last_refusal.get(gpu.label):
            self.last_refusal[gpu.label] = reason or ""
            if reason and self.log:
                self.log(f"{gpu.label}: no new run ({reason})")
        return reason is None

    def _no_room(self, gpu: Gpu, run_id: str, mine: Mapping[str, int]) -> str | None:
        need = self.footprint(run_id)
        if need is None:
            return "already running a run of ours; an unmeasured config gets a GPU to itself" if mine else None
        if gpu.memory_total is None or gpu.memory_used is None:
            return None if not mine else "memory unknown; one run per GPU"
        used_by = {p.pid: p.memory_mib or 0.0 for p in gpu.processes}
        pending = 0.0
        for rid, pid in mine.items():
            theirs = self.footprint(rid)
            if theirs is None:
                return "running an unmeasured run of ours"
            pending += max(0.0, theirs + CONTEXT_MIB - used_by.get(pid, 0.0))
        free = gpu.memory_total * 0.95 - gpu.memory_used - pending
        if free < need + CONTEXT_MIB:
            return f"{free / 1024:.1f} GiB left, a run of this config needs {(need + CONTEXT_MIB) / 1024:.1f} GiB"
        return None


def threads_per_slot(slots: int, cores: int | None = None) -> int:
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, slots))


def store_footprint(store: Any, max_age: float = 5.0) -> Footprint:
    """Footprint of a run = the largest peak GPU memory (``gpu_peak_mib``) recorded by a run of the same config
    (its ``group``: everything but seed and runtime), None until one has been measured."""
    cache: dict[str, tuple[float, float | None]] = {}

    def lookup(run_id: str) -> float | None:
        record = store.get(run_id) or {}
        group = record.get("group")
        if not group:
            return record.get("gpu_peak_mib")
        hit = cache.get(group)
        if hit is None or time.monotonic() - hit[0] > max_age:
            peaks = [r["gpu_peak_mib"] for r in store.find(group=group) if r.get("gpu_peak_mib")]
            hit = cache[group] = (time.monotonic(), max(peaks) if peaks else None)
        return hit[1]

    return lookup
