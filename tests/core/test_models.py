"""Tests for core.models: the paper architecture (docs/architecture.md), the small net and the registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from core.models import (
    ARCHITECTURES,
    MNIST_MEAN,
    MNIST_STD,
    EmbeddingNet,
    build_model,
    paper_net,
    small_net,
)


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("embed_dim", [4, 7])
def test_paper_net_shapes(embed_dim: int) -> None:
    torch.manual_seed(0)
    model = paper_net(embed_dim=embed_dim).eval()
    x = _images(5)
    with torch.no_grad():
        h = model.embed(x)
        logits = model(x)
    assert h.shape == (5, embed_dim)
    assert logits.shape == (5, 10)
    assert model.embed_dim == embed_dim
    assert model.classifier.in_features == embed_dim and model.classifier.out_features == 10


@pytest.mark.slow
def test_forward_equals_classify_of_embed() -> None:
    torch.manual_seed(1)
    for model in (paper_net(), small_net(), paper_net(normalize=True)):
        model.eval()
        x = _images(4, seed=2)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.classify(model.embed(x)), rtol=0, atol=0)
            # classify is exactly the final linear layer on the embedding
            h = model.embed(x)
            torch.testing.assert_close(model.classify(h), h @ model.classifier.weight.T + model.classifier.bias)


def test_paper_net_flattens_64x4x4_features() -> None:
    model = paper_net().eval()
    seen: dict[str, tuple[int, ...]] = {}
    flatten = next(m for m in model.trunk if isinstance(m, nn.Flatten))
    flatten.register_forward_hook(lambda _m, inp, out: seen.update(before=tuple(inp[0].shape), after=tuple(out.shape)))
    with torch.no_grad():
        model.embed(_images(2))
    assert seen["before"] == (2, 64, 4, 4)
    assert seen["after"] == (2, 1024)
    linears = [m for m in model.trunk if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 256), (256, 256), (256, 4)]
    convs = [m for m in model.trunk if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (5, 5), (0, 0)),
        (32, 64, (5, 5), (0, 0)),
    ]
    assert sum(isinstance(m, nn.PReLU) for m in model.trunk) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.trunk) == 2


def test_paper_net_parameter_count_matches_hand_computation() -> None:
    embed_dim = 4
    conv1 = 1 * 32 * 5 * 5 + 32
    conv2 = 32 * 64 * 5 * 5 + 64
    fc1 = 64 * 4 * 4 * 256 + 256
    fc2 = 256 * 256 + 256
    fc3 = 256 * embed_dim + embed_dim
    classifier = embed_dim * 10 + 10
    prelu = 4  # nn.PReLU() has one shared slope each
    expected = conv1 + conv2 + fc1 + fc2 + fc3 + classifier + prelu
    assert expected == 381_370
    model = paper_net(embed_dim=embed_dim)
    assert sum(p.numel() for p in model.parameters()) == expected
    # a different embedding width changes exactly the last trunk layer and the classifier
    wide = paper_net(embed_dim=8)
    assert sum(p.numel() for p in wide.parameters()) == expected + 4 * (256 + 1) + 4 * 10


def test_small_net_shapes_and_is_smaller() -> None:
    torch.manual_seed(0)
    model = small_net(embed_dim=6).eval()
    x = _images(3)
    with torch.no_grad():
        assert model.embed(x).shape == (3, 6)
        assert model(x).shape == (3, 10)
    n_small = sum(p.numel() for p in small_net().parameters())
    n_paper = sum(p.numel() for p in paper_net().parameters())
    # conv 1→16 4×4 + conv 16→32 4×4 + FC 1568→100 + FC 100→4 + classifier 4→10
    assert n_small == (16 * 16 + 16) + (16 * 32 * 16 + 32) + (32 * 7 * 7 * 100 + 100) + (100 * 4 + 4) + (4 * 10 + 10)
    assert n_small < n_paper


def test_models_are_differentiable_wrt_input() -> None:
    torch.manual_seed(0)
    for model in (paper_net(), small_net()):
        x = _images(2).requires_grad_(True)
        model(x).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_registry_builds_each_architecture() -> None:
    assert set(ARCHITECTURES) >= {"paper", "small"}
    for name in ARCHITECTURES:
        model = build_model(name, embed_dim=5, n_classes=7)
        assert isinstance(model, EmbeddingNet)
        with torch.no_grad():
            assert model.eval()(_images(2)).shape == (2, 7)
            assert model.embed(_images(2)).shape == (2, 5)
    # the registry returns the same architecture as the factory
    assert sum(p.numel() for p in build_model("paper").parameters()) == sum(p.numel() for p in paper_net().parameters())
    assert sum(p.numel() for p in build_model("small").parameters()) == sum(p.numel() for p in small_net().parameters())


def test_registry_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError) as info:
        build_model("resnet50")
    message = str(info.value)
    assert "resnet50" in message
    for name in ARCHITECTURES:
        assert name in message


@pytest.mark.slow
@pytest.mark.parametrize("factory", [paper_net, small_net])
def test_normalize_flag_normalizes_inside_the_model(factory: Callable[..., EmbeddingNet]) -> None:
    torch.manual_seed(3)
    plain = factory(normalize=False).eval()
    normed = factory(normalize=True).eval()
    normed.load_state_dict(plain.state_dict())  # same weights; only the flag differs
    x = _images(4, seed=5)
    with torch.no_grad():
        out_plain = plain(x)
        out_normed = normed(x)
        assert not torch.allclose(out_plain, out_normed)
        # normalize=True is exactly the plain model applied to (x − mean) / std
        torch.testing.assert_close(out_normed, plain((x - MNIST_MEAN) / MNIST_STD))
        torch.testing.assert_close(normed.embed(x), plain.embed((x - MNIST_MEAN) / MNIST_STD))
    assert build_model("paper", normalize=True).normalize is True
    assert build_model("paper").normalize is False
