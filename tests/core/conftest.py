"""Fixtures of the science tests."""

from __future__ import annotations

import pytest

from core.data import Dataset, load_dataset


@pytest.fixture(scope="module")
def data() -> Dataset:
    """Synthetic digits, 256 training and 128 test images (seed 0): the training tests' data."""
    return load_dataset("synthetic", seed=0).with_subsets(256, 128, seed=0)
