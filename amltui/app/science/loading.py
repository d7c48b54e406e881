"""A run's data and its trained model, loaded in this process (torch and the science load inside the functions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from amltui.app.runs.folders import RunDir, run_dir
from amltui.app.runs.store import Store
from core.config import RunConfig

if TYPE_CHECKING:
    import torch

    from core.data import Dataset


def load_run_data(config: RunConfig) -> Dataset:
    from core.data import load_dataset

    # Synthetic data is generated with seed 0 whatever the run's seed: seeds of a comparison share the data.
    dataset = load_dataset(config.dataset, config.data_dir, seed=0)
    if config.train_subset or config.test_subset:
        # Subsets are drawn with seed 0 so that every seed of a comparison sees the same images.
        dataset = dataset.with_subsets(config.train_subset, config.test_subset, seed=0)
    return dataset


def data_fingerprint(config: RunConfig) -> str:
    """The fingerprint of the data a run of ``config`` would use (amltui/app/runs/reuse.py compares it)."""
    return load_run_data(config).fingerprint


@dataclass(frozen=True)
class LoadedRun:
    rd: RunDir
    config: RunConfig
    device: torch.device
    model: torch.nn.Module


def load_run_model(store: Store, run_id: str, device: str | None = None) -> LoadedRun:
    """A finished (or checkpointed) run's model on the requested device (default: the run's own)."""
    from core.device import resolve_device, set_threads
    from core.train import load_model

    rd = run_dir(store.runs_dir, run_id)
    if not rd.checkpoint.exists():
        raise FileNotFoundError(f"run {run_id} has no checkpoint yet ({rd.checkpoint}); it has not finished an epoch")
    config = rd.read_config()
    set_threads(config.threads)
    dev = resolve_device(device or config.device)
    return LoadedRun(rd, config, dev, load_model(rd.checkpoint, config, dev))
