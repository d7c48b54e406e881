"""Checks a run's configuration can start, before anything is queued: no torch, no training, a second or less.

The worker would find the same problems seconds or hours later, after `run --detach` had said "queued"; here
they are a clear error (what is wrong, then ``Fix:``) while the user still waits at the prompt:
- the dataset's four idx files are present and readable, with sane headers (core/idx_files.py locates them
  exactly as core/data.py does);
- ``train_subset`` / ``test_subset`` are no larger than their split (read from the idx headers; the generated
  synthetic data has core/registry.py SYNTHETIC_SIZES), and ``holdout`` leaves images to train on;
- the GPUs named by ``device=cuda:N`` or ``--gpus`` exist among the visible ones (amltui/app/gpus.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from amltui.app import gpus as gpu_info
from core.errors import DataNotFoundError
from core.idx_files import SAMPLE_DIR, cache_fix, default_cache_dir, find_idx_files, read_idx_header
from core.registry import SYNTHETIC_SIZES

# Where torchvision downloads from (torchvision.datasets.MNIST/FashionMNIST.mirrors), and the splits it gets.
DOWNLOAD_HOSTS = {"mnist": ("ossci-datasets.s3.amazonaws.com", 443),
                  "fashion-mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)}
DOWNLOAD_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000)}


class PreflightError(ValueError):
    """The run cannot start as configured; the message says what is wrong and how to fix it."""


def reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:port opens (the download's mirror), within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_config(cfg: Any, *, gpus: str | None = None, local: bool = True, inventory: Any = None,
                 env: Mapping[str, str] | None = None, probe: Callable[[str, int], bool] = reachable) -> None:
    """Raise PreflightError when ``cfg`` (a core.config.RunConfig) cannot start; ``gpus`` is `run --gpus`.

    ``local=False`` (runs that start on other machines, e.g. Slurm's) skips the GPU check, which sees this one.
    ``inventory`` (amltui.app.gpus.Inventory), ``env`` and ``probe`` replace the machine's for tests.
    """
    sizes = split_sizes(cfg.dataset, cfg.data_dir, probe)
    if sizes is not None:
        _check_subsets(cfg, sizes)
        _check_holdout(cfg, sizes[0])
    if local:
        _check_gpus(cfg.device, gpus, inventory, env)


def split_sizes(dataset: str, data_dir: str | None, probe: Callable[[str, int], bool] = reachable
                ) -> tuple[int, int] | None:
    """(train, test) sizes of the dataset's files (or of the generated synthetic data). Raises PreflightError."""
    if dataset == "synthetic":
        return SYNTHETIC_SIZES
    if dataset == "mnist-sample":
        return _idx_sizes(SAMPLE_DIR, dataset)
    if data_dir is not None:
        return _idx_sizes(Path(data_dir).expanduser(), dataset)
    cache = default_cache_dir()
    try:
        return _idx_sizes(cache, dataset)
    except PreflightError as missing:
        if not isinstance(missing.__cause__, DataNotFoundError) or dataset not in DOWNLOAD_HOSTS:
            raise
        host, port = DOWNLOAD_HOSTS[dataset]
        if not probe(host, port):
            raise PreflightError(f"{dataset}: not in the download cache {cache}, and its mirror {host} cannot be "
                                 f"reached from this machine.\nFix: {cache_fix(dataset)}") from missing
        return DOWNLOAD_SIZES[dataset]  # the worker downloads it


def _idx_sizes(folder: Path, dataset: str) -> tuple[int, int]:
    try:
        files = find_idx_files(folder, dataset)
    except DataNotFoundError as exc:
        raise PreflightError(str(exc)) from exc
    try:
        dims = {key: read_idx_header(path) for key, path in files.items()}
    except ValueError as exc:
        raise PreflightError(f"{dataset}: {exc}") from exc
    sizes = []
    for split in ("train", "test"):
        images, labels = dims[f"{split}_images"], dims[f"{split}_labels"]
        if len(images) != 3 or images[1:] != (28, 28) or len(labels) != 1 or labels[0] != images[0]:
            raise PreflightError(
                f"{dataset}: {files[f'{split}_images']} declares images {images} and {files[f'{split}_labels']} "
                f"labels {labels}; expected (N, 28, 28) images and N labels.\nFix: replace them with the "
                "dataset's own files (the two must belong to the same split)")
        sizes.append(images[0])
    return sizes[0], sizes[1]


def _check_subsets(cfg: Any, sizes: tuple[int, int]) -> None:
    for split, wanted, size in (("train", cfg.train_subset, sizes[0]), ("test", cfg.test_subset, sizes[1])):
        if wanted is not None and wanted > size:
            raise PreflightError(f"--{split}-subset {wanted}: the {cfg.dataset} {split} split holds only {size} "
                                 f"images.\nFix: use --{split}-subset {size} or less, or leave it out (whole split)")


def _check_holdout(cfg: Any, train_size: int) -> None:
    holdout = getattr(cfg, "holdout", 0) or 0
    training = min(cfg.train_subset or train_size, train_size)
    if holdout >= training:
        raise PreflightError(f"holdout={holdout}: the run trains on {training} {cfg.dataset} images, and a hold-out "
                             f"must leave some to train on.\nFix: use holdout={training // 10} (a tenth) or less")


def _check_gpus(device: str, gpus: str | None, inventory: Any, env: Mapping[str, str] | None) -> None:
    device = (device or "auto").strip().lower()
    try:
        spec = gpu_info.parse_gpu_spec(gpus)
    except gpu_info.GpuError as exc:
        raise PreflightError(str(exc)) from exc
    wanted = [int(device.split(":")[1])] if device.startswith("cuda:") else []
    positions = spec if isinstance(spec, list) else []
    if not wanted and not positions and device != "cuda":
        return  # cpu, auto, or all visible GPUs: nothing named that could be missing
    inv = inventory if inventory is not None else gpu_info.inventory()
    visible = gpu_info.visible_gpus(inv, env).gpus
    have = ", ".join(f"{k} ({g.label})" for k, g in enumerate(visible)) or "none"
    why = f"; {inv.problem}" if not visible and inv.problem else ""
    if device == "cuda" and not visible:
        raise PreflightError(f"device=cuda: no GPU is visible{why}.\nFix: use device=cpu (or auto)")
    for what, ids in ((f"device={device}", wanted), (f"--gpus {gpus}", positions)):
        bad = [i for i in ids if i >= len(visible)]
        if bad:
            raise PreflightError(f"{what}: no visible GPU {', '.join(map(str, bad))} (visible: {have}{why}).\n"
                                 "Fix: name a visible GPU (`amltui gpus` lists them), or use device=cpu / --gpus none")
