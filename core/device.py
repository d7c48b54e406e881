"""Device and thread selection, shared by training, evaluation and invariance generation."""

from __future__ import annotations

import os

import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' → the first visible GPU if any, else CPU; 'cpu'; 'cuda' / 'cuda:N' (checked to exist)."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for but no CUDA GPU is visible; use --device cpu or auto")
        device = torch.device("cuda:0" if spec == "cuda" else spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
        return device
    raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")


def set_threads(threads: int | None) -> int:
    """Call before any compute: intra-op threads = the given count, else the cores this process may use."""
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            threads = os.cpu_count() or 1
    torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


# cuBLAS needs a fixed workspace to be deterministic (NVIDIA's documented value; ":16:8" uses less memory).
CUBLAS_WORKSPACE = ":4096:8"


def set_deterministic(on: bool) -> None:
    """``deterministic=true``: deterministic kernels only (torch raises on an op that has none), cuDNN without
    autotuning, and a fixed cuBLAS workspace. Call before any CUDA work; costs speed on GPU (docs/gpus.md, "GPUs on
    shared servers"). Off leaves torch's defaults alone."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def peak_memory_mib(device: torch.device) -> float | None:
    """The most GPU memory torch's allocator has held in this process (reserved, MiB); None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_reserved(device) / (1024 * 1024)
