"""Shared fixtures: tiny, fast configurations on CPU."""

from __future__ import annotations

import os

import pytest
import torch

# Tests compare numbers across runs: one intra-op thread keeps CPU reductions identical and the suite polite.
torch.set_num_threads(1)
os.environ.setdefault("AMLTUI_RUNS_DIR", "")  # never write into the checkout's runs/ by accident

TINY = dict(dataset="synthetic", arch="small", epochs=2, train_subset=256, test_subset=128, batch_size=64,
            eval_batch_size=128, pgd_steps=3, threads=1)


@pytest.fixture
def tiny_overrides() -> list[str]:
    """--set overrides making a CLI run take a few seconds."""
    return ["arch=small", "train_subset=256", "test_subset=128", "batch_size=64", "eval_batch_size=128",
            "pgd_steps=3", "threads=1"]
