"""One optimisation step of the objective, as cheap as the model allows (bench/README.md has the figures).

The objective needs f and h of the clean images, of the training attack's x_p (and of x_q for ml_sa_ia). The
plain path (any model, any attack) makes x_p first, then runs one joint forward over [x, x_p(, x_q)]. Two
faster paths compute the same loss and the same gradients (up to float rounding) when the attack is plain FGSM
and the model behaves the same in train and eval mode (no dropout, batch norm, ...; checked by
``mode_independent``, else the plain path is used):

- *reuse*: FGSM's forward on x keeps its graph and serves as the objective's clean forward, so the trunk runs
  on x once instead of twice; FGSM's backward asks for the input gradient only and the final backward for the
  parameter gradients only.
- *fused* (the objective's only use of the clean forward is w_clean·CE, as in the baseline): one backward of
  CE(f(x)) gives FGSM's input gradient and the clean term's parameter gradients together; the final backward
  then runs through the adversarial forward only.

On the CPU, ``pool_first_embed`` also runs each PReLU → MaxPool pair as MaxPool → PReLU while the slopes are
positive (they commute), and core.train puts conv models in channels_last (``use_channels_last``).

GPU options (config keys, docs in docs/gpus.md, "Speed and GPUs"): ``amp`` runs the objective's forward under bf16
autocast while the attack and the loss stay in float32 (then only the plain path applies: the attack's float32
forward cannot double as the bf16 one); ``compile`` wraps ``model.embed`` in ``torch.compile`` (the module and
its state_dict are untouched). ``step`` never syncs with the host; ``__call__`` returns floats (one sync).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attacks import FGSM, make_train_attack
from core.attacks.fgsm import fgsm_example
from core.config import RunConfig
from core.losses import ObjectiveWeights, TripletLoss, make_distance, objective_terms, terms_to_floats
from core.models import MNIST_MEAN, MNIST_STD, EmbeddingNet
from core.registry import make_miner

# Modules whose forward does not depend on module.training; anything else (dropout, batch norm, a custom layer)
# disables the graph reuse, because FGSM attacks the eval-mode model and the objective uses the train-mode one.
MODE_INDEPENDENT: tuple[type[nn.Module], ...] = (
    EmbeddingNet, nn.Sequential, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Flatten, nn.Identity,
    nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.LayerNorm,
)


def weights_of(config: RunConfig) -> ObjectiveWeights:
    return ObjectiveWeights(
        w_clean=config.w_clean, w_adv=config.w_adv, lambda_sa=config.lambda_sa,
        lambda_ia=config.lambda_ia, lambda_norm=config.lambda_norm,
    )


def mode_independent(model: nn.Module) -> bool:
    """True when every submodule is of a type whose output does not depend on train/eval mode."""
    return all(type(m) in MODE_INDEPENDENT for m in model.modules())


def use_channels_last(model: nn.Module) -> bool:
    """Put a model with 2-D convolutions in channels_last (same values, faster convolutions on CPU and GPU)."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def pool_first_embed(model: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """``model.embed`` with every PReLU → MaxPool2d pair run as MaxPool2d → PReLU while all their slopes are > 0.

    A PReLU with slope a > 0 is strictly increasing, so max-pooling commutes with it: the outputs are bitwise
    the same, the pooling picks the same elements, and the gradients agree up to the summation order of the
    slope's gradient. The PReLU (forward and its costly backward) then runs on 4× fewer elements. The slopes
    are read every call (a host read), so this is for CPU models only; None when the model has no such pair.
    """
    trunk = getattr(model, "trunk", None)
    if type(model) is not EmbeddingNet or type(trunk) is not nn.Sequential:
        return None
    if any(p.device.type != "cpu" for p in model.parameters()):
        return None
    layers = list(trunk)
    pairs = {i for i in range(len(layers) - 1) if type(layers[i]) is nn.PReLU
             and type(layers[i + 1]) is nn.MaxPool2d and not layers[i + 1].return_indices}
    if not pairs:
        return None

    def embed(x: Tensor) -> Tensor:
        if model.normalize:  # as EmbeddingNet.embed
            x = (x - MNIST_MEAN) / MNIST_STD
        swap = all(bool((layers[i].weight > 0).all()) for i in pairs)
        i = 0
        while i < len(layers):
            if swap and i in pairs:
                x = layers[i](layers[i + 1](x))
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x

    return embed


class TrainStep:
    """Training-attack examples x_p, the objective's forward(s), loss, update (see the module docstring).

    ``path`` says which of "plain", "reuse" and "fused" this step takes; ``compile_backend`` is torch.compile's
    backend when ``config.compile`` is set ("inductor"; tests use "eager" to exercise the wiring on CPU).
    """

    def __init__(self, config: RunConfig, model: EmbeddingNet, optimizer: torch.optim.Optimizer,
                 miner_gen: torch.Generator | None = None, attack_gen: torch.Generator | None = None,
                 *, compile_backend: str = "inductor") -> None:
        self.model = model
        self.optimizer = optimizer
        self.weights = weights_of(config)
        distance = make_distance(config.distance)  # the miner ranks negatives by the loss's own distance
        self.triplet = TripletLoss(margin=config.margin, miner=make_miner(config.miner, distance),
                                   negatives=config.negatives, distance=distance)
        self.attack = make_train_attack(config.train_attack, model, config.eps_s, alpha=config.train_alpha,
                                        steps=config.train_steps, generator=attack_gen)
        self.fgsm = self.attack  # the name older callers (bench/) use
        self.miner_gen = miner_gen
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.amp = bool(config.amp)
        self.embed: Callable[[Tensor], Tensor] = model.embed
        if config.compile:
            self.embed = torch.compile(model.embed, backend=compile_backend)
        elif (fast := pool_first_embed(model)) is not None:
            self.embed = fast
        w = self.weights
        if config.train_attack != "fgsm" or self.amp or not mode_independent(model):
            self.path = "plain"
        elif w.lambda_sa == 0 and w.lambda_ia == 0 and w.w_clean > 0:
            self.path = "fused"
        else:
            self.path = "reuse"

    # ---- the step ------------------------------------------------------------------------------------
    def __call__(self, x: Tensor, y: Tensor, x_inv: Tensor | None = None) -> dict[str, float]:
        """One step; its terms as floats (one host sync). The update is skipped when the loss is not finite."""
        loss, terms = self.losses(x, y, x_inv)
        info = terms_to_floats(terms)
        if math.isfinite(info["loss"]):
            self.update(loss)
        else:
            self.optimizer.zero_grad(set_to_none=True)
        return info

    def step(self, x: Tensor, y: Tensor, x_inv: Tensor | None = None) -> dict[str, Tensor]:
        """One step without any host sync: the terms stay detached device tensors.

        The update is applied whatever the loss; the caller checks finiteness when it syncs (core.train: every
        ``log_every`` batches) and stops the run, so a non-finite step never reaches a checkpoint.
        """
        loss, terms = self.losses(x, y, x_inv)
        self.update(loss)
        return terms

    def update(self, loss: Tensor) -> None:
        if self.path != "fused":
            self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            # inputs=params: no gradient for the input leaf of the reused clean forward (it is not needed).
            torch.autograd.backward(loss, inputs=self.params)
        self.optimizer.step()

    def losses(self, x: Tensor, y: Tensor, x_inv: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss with its graph, detached terms). On the "fused" path the clean term's gradients are already in
        the parameters' ``.grad`` when this returns, and ``loss`` carries the graph of the other terms only."""
        if self.path == "fused":
            return self._fused(x, y)
        if self.path == "reuse":
            return self._reuse(x, y, x_inv)
        return self._plain(x, y, x_inv)

    def _objective(self, y: Tensor, **parts: Any) -> tuple[Tensor, dict[str, Tensor]]:
        return objective_terms(labels=y, weights=self.weights, triplet=self.triplet, generator=self.miner_gen,
                               **parts)

    def _plain(self, x: Tensor, y: Tensor, x_inv: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        x_adv = self.attack(x, y)  # float32 even under amp: the sign of a bf16 gradient is not FGSM's
        # One forward over clean, adversarial (and invariance) images gives every h and logit needed.
        parts = [x, x_adv] + ([x_inv] if x_inv is not None else [])
        amp = torch.autocast(x.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()
        with amp:
            h = self.embed(torch.cat(parts))
            logits = self.model.classify(h)
        h, logits = h.float(), logits.float()  # loss and distances in float32
        b = x.shape[0]
        return self._objective(y, logits_clean=logits[:b], logits_adv=logits[b:2 * b], h_clean=h[:b],
                               h_adv=h[b:2 * b], h_inv=h[2 * b:] if x_inv is not None else None)

    def _fgsm(self, x: Tensor, grad: Tensor) -> Tensor:
        assert isinstance(self.attack, FGSM)
        return fgsm_example(x, grad, self.attack.eps)

    def _reuse(self, x: Tensor, y: Tensor, x_inv: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        xr = x.detach().requires_grad_(True)
        h_clean = self.embed(xr)
        logits_clean = self.model.classify(h_clean)
        # FGSM's input gradient only (no parameter .grad); the graph is kept for the objective's backward.
        (gx,) = torch.autograd.grad(F.cross_entropy(logits_clean, y), xr, retain_graph=True)
        x_adv = self._fgsm(x, gx)
        h_rest = self.embed(torch.cat([x_adv, x_inv]) if x_inv is not None else x_adv)
        logits_rest = self.model.classify(h_rest)
        b = x.shape[0]
        return self._objective(y, logits_clean=logits_clean, logits_adv=logits_rest[:b], h_clean=h_clean,
                               h_adv=h_rest[:b], h_inv=h_rest[b:] if x_inv is not None else None)

    def _fused(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        xr = x.detach().requires_grad_(True)
        logits_clean = self.model.classify(self.embed(xr))
        grads = torch.autograd.grad(F.cross_entropy(logits_clean, y), [*self.params, xr], allow_unused=True)
        x_adv = self._fgsm(x, grads[-1])
        w_clean = self.weights.w_clean
        for p, g in zip(self.params, grads[:-1], strict=True):
            p.grad = torch.zeros_like(p) if g is None else g.mul_(w_clean)
        logits_adv = self.model.classify(self.embed(x_adv))
        # The clean logits enter detached: their term's gradients are in .grad already.
        return self._objective(y, logits_clean=logits_clean.detach(), logits_adv=logits_adv, h_clean=None,
                               h_adv=None, h_inv=None)
