"""Stand-in models for the robustness tests (torch; kept out of tests/helpers.py, which the dashboard's
tests import without torch)."""

from __future__ import annotations

import torch
from torch import nn


class Quantized(nn.Module):
    """Rounds its input to 5 gray levels: zero input gradient almost everywhere, i.e. masked gradients by
    construction. Gradient attacks see nothing; a score-based black-box attack is unaffected."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 4) / 4)
