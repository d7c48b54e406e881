"""Architectures with ``embed(x)`` (penultimate embedding h(x)), ``classify(h)`` and ``forward(x)`` (logits).

Inputs are pixels in [0, 1]; any normalization lives inside the model, so attacks and losses never see it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from core import registry

# MNIST statistics; only used when a model is built with normalize=True.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class EmbeddingNet(nn.Module):
    """Base class: a trunk giving h(x) and one linear classifier on top of it."""

    embed_dim: int

    def __init__(self, trunk: nn.Module, embed_dim: int, n_classes: int, normalize: bool) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.normalize = normalize
        self.trunk = trunk
        self.classifier = nn.Linear(embed_dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """h(x): the penultimate-layer embedding, shape (N, embed_dim)."""
        if self.normalize:
            x = (x - MNIST_MEAN) / MNIST_STD
        return self.trunk(x)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits f(x) from an embedding, so one trunk pass gives both h and f."""
        return self.classifier(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


def paper_net(embed_dim: int = 4, n_classes: int = 10, normalize: bool = False) -> EmbeddingNet:
    """The architecture behind the paper's Table 1 (docs/architecture.md): two 5×5 convs, three FC layers, PReLU."""
    trunk = nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.PReLU(), nn.MaxPool2d(2),  # 28 → 24 → 12
        nn.Conv2d(32, 64, 5), nn.PReLU(), nn.MaxPool2d(2),  # 12 → 8 → 4
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 256), nn.PReLU(),
        nn.Linear(256, 256), nn.PReLU(),
        nn.Linear(256, embed_dim),
    )
    return EmbeddingNet(trunk, embed_dim, n_classes, normalize)


def small_net(embed_dim: int = 4, n_classes: int = 10, normalize: bool = False) -> EmbeddingNet:
    """A fast net for CPU work (Wong et al. 2020's MNIST model): convs 16/32 4×4 stride 2, FC 100."""
    trunk = nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),  # 28 → 14
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),  # 14 → 7
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100), nn.ReLU(),
        nn.Linear(100, embed_dim),
    )
    return EmbeddingNet(trunk, embed_dim, n_classes, normalize)


ARCHITECTURES: dict[str, Callable[..., EmbeddingNet]] = {"paper": paper_net, "small": small_net}
registry.must_match("architectures", ARCHITECTURES, registry.ARCHITECTURES)


def build_model(arch: str, embed_dim: int = 4, n_classes: int = 10, normalize: bool = False) -> EmbeddingNet:
    """Build a registered architecture by name."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}") from None
    return factory(embed_dim=embed_dim, n_classes=n_classes, normalize=normalize)
