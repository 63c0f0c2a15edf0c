"""Small models and an independent, explicit-arithmetic SAM reference for the optim tests."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn


def make_mlp(
    seed: int = 0, dtype: torch.dtype = torch.float64, batchnorm: bool = False
) -> nn.Module:
    """4 -> 6 -> 1 MLP (optionally with BatchNorm1d), seeded."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(4, 6)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(6))
    layers += [nn.Tanh(), nn.Linear(6, 1)]
    return nn.Sequential(*layers).to(dtype)


def make_batch(seed: int, n: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen, dtype=dtype)
    y = torch.randn(n, 1, generator=gen, dtype=dtype)
    return x, y


def mse(output: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    err = (output - target) ** 2
    return err.mean() if weight is None else (weight * err).mean()


def grads_at(
    model: nn.Module, batch: tuple[Tensor, Tensor], loss_fn: Callable = mse
) -> list[Tensor]:
    """Gradient of the mean loss on ``batch`` at the model's current weights."""
    loss = loss_fn(model(batch[0]), batch[1])
    return list(torch.autograd.grad(loss, list(model.parameters())))


def explicit_sam_gradient(
    model: nn.Module, batch: tuple[Tensor, Tensor], rho: float
) -> list[Tensor]:
    """g_SAM = grad L(w + rho g/||g||), written out by hand; weights left at w."""
    weights = [p.detach().clone() for p in model.parameters()]
    g = grads_at(model, batch)
    norm = torch.sqrt(sum((gi.double() ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(model.parameters(), g, strict=True):
            p.add_(rho * gi / norm)
    g_sam = grads_at(model, batch)
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights, strict=True):
            p.copy_(w)
    return g_sam


def reference_sam_training(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    rho: float,
    make_opt: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    sam_steps: Callable[[int], bool] = lambda t: True,
) -> nn.Module:
    """Train a deep copy: one step per batch, SAM where ``sam_steps(t)``, else plain."""
    ref = copy.deepcopy(model)
    opt = make_opt(list(ref.parameters()))
    for t, batch in enumerate(batches):
        grads = explicit_sam_gradient(ref, batch, rho) if sam_steps(t) else grads_at(ref, batch)
        for p, g in zip(ref.parameters(), grads, strict=True):
            p.grad = g
        opt.step()
        opt.zero_grad()
    return ref


def assert_same_params(
    a: nn.Module, b: nn.Module, rtol: float = 1e-11, atol: float = 1e-13
) -> None:
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")
