"""The signed-gradient step, the L∞ projection and the random start are written once (core/attacks/base.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from core.attacks.base import project_linf, signed_step, uniform_start
from tests.helpers import ROOT


def test_projection_lands_in_the_ball_and_in_the_unit_box():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=gen)
    far = x + 3 * (torch.rand(x.shape, generator=gen) - 0.5)
    p = project_linf(far, x, 0.1)
    assert float((p - x).abs().amax()) <= 0.1 + 1e-6
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert torch.equal(project_linf(p, x, 0.1), p)  # idempotent


def test_an_fgsm_step_of_eps_is_left_alone_by_the_projection():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(32, 10, generator=gen)
    grad = torch.randn(32, 10, generator=gen)
    step = signed_step(x, grad, 0.3)
    assert torch.equal(project_linf(step.clone(), x, 0.3), step.clamp(0, 1))


def test_uniform_start_is_seeded_and_inside_the_ball():
    x = torch.rand(16, 5, generator=torch.Generator().manual_seed(2))
    a = uniform_start(x, 0.2, torch.Generator().manual_seed(3))
    b = uniform_start(x, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert float((a - x).abs().amax()) <= 0.2 + 1e-6 and float(a.min()) >= 0 and float(a.max()) <= 1


def _sign_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "sign" and not (isinstance(n.func.value, ast.Name) and n.func.value.id == "torch")]


def test_no_other_module_of_core_writes_its_own_signed_gradient_step():
    found = {str(p.relative_to(ROOT)): lines for p in sorted((ROOT / "core").rglob("*.py"))
             if (lines := _sign_calls(p))}
    assert found == {"core/attacks/base.py": found.get("core/attacks/base.py", [])} and found, found
