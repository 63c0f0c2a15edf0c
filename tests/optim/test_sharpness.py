"""sharpness(): closed form on a quadratic, exact restore, modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segbalance.optim import sharpness

from ._helpers import grads_at, make_batch, make_mlp, mse

A = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, -0.2], [0.0, -0.2, 2.0]])
W = np.array([0.7, -1.2, 0.4])


class _Vector(nn.Module):
    """A module whose output is its parameter vector (the loss makes the quadratic)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(W))
        self.dropout = nn.Dropout(0.5)

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w)  # dropout is a no-op only in eval mode


def _quadratic(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return 0.5 * out @ torch.tensor(A) @ out


def _numpy_sharpness(rho: float, steps: int) -> float:
    loss = lambda w: 0.5 * w @ A @ w  # noqa: E731
    w = W.copy()
    for _ in range(steps):
        g = A @ w
        w = w + (rho / steps) * g / np.linalg.norm(g)
    return loss(w) - loss(W)


@pytest.mark.parametrize("steps", [1, 3])
def test_quadratic_closed_form_and_exact_restore(steps: int) -> None:
    model = _Vector()
    model.train()
    model.dropout.eval()  # mixed modes must come back as they were
    before = model.w.detach().clone()
    value = sharpness(model, _quadratic, (torch.zeros(1), torch.zeros(1)), rho=0.1, steps=steps)
    assert value == pytest.approx(_numpy_sharpness(0.1, steps), rel=1e-10)
    if steps == 1:  # rho ||g|| + rho^2 g^T A g / (2 ||g||^2)
        g = A @ W
        closed = 0.1 * np.linalg.norm(g) + 0.5 * 0.01 * g @ A @ g / (g @ g)
        assert value == pytest.approx(closed, rel=1e-12)
    assert torch.equal(model.w.detach(), before)
    assert model.training and not model.dropout.training
    assert model.w.grad is None


def test_mlp_matches_explicit_perturbation() -> None:
    model = make_mlp(seed=14)
    x, y = make_batch(15, 16)
    value = sharpness(model, mse, (x, y), rho=0.5)
    g = grads_at(model, (x, y))
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    perturbed = make_mlp(seed=14)
    with torch.no_grad():
        for p, gi in zip(perturbed.parameters(), g, strict=True):
            p.add_(0.5 * gi / norm)
        expected = mse(perturbed(x), y) - mse(model(x), y)
    assert value == pytest.approx(float(expected), rel=1e-10)
    assert value > 0


def test_batchnorm_uses_running_stats_and_is_not_updated() -> None:
    model = make_mlp(seed=16, batchnorm=True)
    model.train()
    stats = [b.clone() for b in model[1].buffers()]
    sharpness(model, mse, make_batch(17, 8), rho=0.05)
    assert all(torch.equal(a, b) for a, b in zip(stats, model[1].buffers(), strict=True))
    assert model.training


def test_bad_arguments() -> None:
    model = make_mlp()
    with pytest.raises(ValueError, match="rho"):
        sharpness(model, mse, make_batch(0, 4), rho=-1.0)
    with pytest.raises(ValueError, match="steps"):
        sharpness(model, mse, make_batch(0, 4), rho=0.1, steps=0)
