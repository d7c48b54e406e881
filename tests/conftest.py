"""Shared test settings: tiny, fast configurations on CPU."""

from __future__ import annotations

import torch

# Tests compare numbers across runs: one intra-op thread keeps CPU reductions identical and the suite polite.
torch.set_num_threads(1)

TINY = dict(dataset="synthetic", arch="small", epochs=2, train_subset=256, test_subset=128, batch_size=64,
            eval_batch_size=128, pgd_steps=3, threads=1)
