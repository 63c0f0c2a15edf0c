"""Sharpness of the loss at the current weights (METHODS §8; DESIGN "Decisions")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from segbalance.optim.distributed import is_ddp
from segbalance.optim.perturbation import NORM_EPS, check_rho, global_norm


def sharpness(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    batch: Sequence[Any],
    rho: float,
    steps: int = 1,
) -> float:
    """``L(w + e) - L(w)`` on ``batch``, with ``e`` from normalised gradient ascent.

    ``steps=1``: ``e = rho * g / ||g||`` (SAM's first-order maximiser of the loss in the
    ``rho``-ball). ``steps > 1``: ``steps`` ascent steps of length ``rho / steps``, each
    along the normalised gradient at the current point, so ``||e|| <= rho``.

    Args:
        model: evaluated in eval mode (BatchNorm uses running statistics, no dropout); the
            mode of every submodule is restored afterwards. A DDP wrapper is unwrapped.
        loss_fn: ``loss_fn(model(inputs), target[, weight=weight])`` -> scalar.
        batch: ``(inputs, target)`` or ``(inputs, target, weight)``.
        rho: ascent radius (>= 0).
        steps: number of ascent steps (>= 1).

    The weights are restored bit-exactly from a copy; ``.grad`` is not touched.
    """
    rho = check_rho(rho)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"Expected steps to be an integer >= 1 but got {steps!r}")
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        raise ValueError("Expected batch to be (inputs, target) or (inputs, target, weight)")
    module = model.module if is_ddp(model) else model
    inputs, target, *rest = batch
    kwargs = {"weight": rest[0]} if rest else {}
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("Expected a model with trainable parameters but found none")
    modes = [(m, m.training) for m in module.modules()]
    saved = [p.detach().clone() for p in params]
    module.eval()
    try:
        loss_at_w: Tensor | None = None
        for _ in range(steps):
            with torch.enable_grad():
                loss = loss_fn(module(inputs), target, **kwargs)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            loss_at_w = loss.detach() if loss_at_w is None else loss_at_w
            pairs = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
            if not pairs:
                break
            step_scale = (rho / steps) / (global_norm([g for _, g in pairs]) + NORM_EPS)
            with torch.no_grad():
                for p, g in pairs:
                    p.add_(g * step_scale.to(p))
        with torch.no_grad():
            loss_perturbed = loss_fn(module(inputs), target, **kwargs)
        assert loss_at_w is not None
        return float(loss_perturbed.double() - loss_at_w.double())
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
        for m, training in modes:
            m.training = training
