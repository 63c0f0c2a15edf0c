"""Loss landscape along filter-normalised random directions.

Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
NeurIPS 2018: a Gaussian direction per parameter tensor, each filter (slice along dim 0)
rescaled to the norm of the matching filter of the weights, so that the plot does not
depend on the scale invariance of ReLU/normalised networks; 1-D tensors (biases, norm
affine parameters) get a zero direction, as in the paper. The loss is evaluated at
``w + a d1`` (1-D) and ``w + a d1 + b d2`` (2-D).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.optim.distributed import is_ddp

# Filters whose random draw has a (numerically) zero norm stay zero instead of exploding.
_NORM_EPS = 1e-12


def _trainable(model: nn.Module) -> list[Tensor]:
    module = model.module if is_ddp(model) else model
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("Expected a model with trainable parameters but found none")
    return params


def filter_normalized_directions(
    params: Sequence[Tensor], generator: torch.Generator
) -> list[Tensor]:
    """One random direction per tensor, filter-normalised (Li et al. 2018).

    Args:
        params: weight tensors; a tensor of shape ``(F, *rest)`` with ``ndim >= 2`` has F
            filters ``w[i]``.
        generator: CPU generator; draws are float32 on the CPU (the same on every device),
            then cast to each tensor's dtype and device.

    Returns:
        Tensors shaped like ``params``: ``d[i] = g[i] * ||w[i]|| / ||g[i]||`` with ``g``
        standard normal, so every filter of ``d`` has the norm of the matching weight
        filter; zeros for tensors with ``ndim <= 1``.
    """
    directions = []
    for p in params:
        draw = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        if p.ndim <= 1:
            directions.append(torch.zeros_like(p))
            continue
        d = draw.to(device=p.device, dtype=p.dtype)
        d_rows = d.reshape(d.shape[0], -1)
        w_norm = p.detach().reshape(p.shape[0], -1).norm(dim=1, keepdim=True)
        d_norm = d_rows.norm(dim=1, keepdim=True)
        scale = torch.where(d_norm > _NORM_EPS, w_norm / d_norm.clamp_min(_NORM_EPS), 0.0)
        directions.append((d_rows * scale).reshape(p.shape))
    return directions


def _grid(steps: int, span: float) -> list[float]:
    return torch.linspace(-span, span, steps, dtype=torch.float64).tolist()


def _json_float(value: Tensor) -> float | None:
    number = float(value.double())
    return number if math.isfinite(number) else None


def loss_landscape(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    batch: Sequence[Any],
    *,
    steps: int = 21,
    span: float = 1.0,
    two_d: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Loss along one (and a second) filter-normalised random direction.

    Args:
        model: evaluated in eval mode (running BatchNorm statistics, no dropout); every
            submodule's mode and every trainable weight are restored bit-exactly afterwards.
            Only parameters with ``requires_grad`` are perturbed.
        loss_fn: ``loss_fn(model(inputs), target[, weight=weight])`` -> scalar tensor.
        batch: ``(inputs, target)`` or ``(inputs, target, weight)``.
        steps: grid points per axis (>= 2), evenly spaced in ``[-span, span]``.
        span: half-width of the grid in units of the direction (1.0 = one filter norm).
        two_d: also evaluate the ``steps x steps`` grid of ``w + a d1 + b d2``.
        seed: seed of the CPU generator drawing ``d1`` then ``d2``.

    Returns:
        JSON-able ``{"alphas": [steps], "loss_1d": [steps], "seed", "span", "steps",
        "normalization": "filter"}`` plus, with ``two_d``, ``"betas": [steps]`` and
        ``"loss_2d"``: ``steps`` rows, ``loss_2d[j][i]`` = loss at
        ``(alphas[i], betas[j])`` (rows follow betas, as matplotlib's ``contour(X, Y, Z)``).
        A non-finite loss is stored as ``null``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"Expected steps to be an integer >= 2 but got {steps!r}")
    if not (isinstance(span, int | float) and math.isfinite(span) and span > 0):
        raise ValueError(f"Expected span to be a finite number > 0 but got {span!r}")
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        raise ValueError("Expected batch to be (inputs, target) or (inputs, target, weight)")
    module = model.module if is_ddp(model) else model
    params = _trainable(module)
    inputs, target, *rest = batch
    kwargs = {"weight": rest[0]} if rest else {}
    generator = torch.Generator().manual_seed(int(seed))
    d1 = filter_normalized_directions(params, generator)
    d2 = filter_normalized_directions(params, generator) if two_d else None
    alphas = _grid(steps, float(span))
    modes = [(m, m.training) for m in module.modules()]
    saved = [p.detach().clone() for p in params]

    def loss_at(a: float, b: float | None = None) -> float | None:
        # Always w0 + a d1 (+ b d2) from the saved copy: no drift across grid points.
        for index, (p, w, u) in enumerate(zip(params, saved, d1, strict=True)):
            value = w + a * u
            if b is not None and d2 is not None:
                value = value + b * d2[index]
            p.copy_(value)
        return _json_float(loss_fn(module(inputs), target, **kwargs))

    module.eval()
    try:
        with torch.no_grad():
            result: dict[str, Any] = {
                "alphas": alphas,
                "loss_1d": [loss_at(a) for a in alphas],
                "seed": int(seed),
                "span": float(span),
                "steps": steps,
                "normalization": "filter",
            }
            if two_d:
                result["betas"] = list(alphas)
                result["loss_2d"] = [[loss_at(a, b) for a in alphas] for b in alphas]
        return result
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
        for m, training in modes:
            m.training = training
