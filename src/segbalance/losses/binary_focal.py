"""Fused focal loss for C = 1 (sigmoid) and C = 2 (two-class softmax), METHODS §1.6.

On the binary logit ``d`` (``z`` or ``z_1 - z_0``) with ``v = d (1 - 2y)``:
``l = BCE = softplus(v)``, ``p_t = exp(-l)``, ``q = 1 - p_t`` and the voxel loss is
``alpha_t q^gamma l``. Its derivative ``dL/dv = alpha_t q^gamma (gamma p_t l + q)`` is
formed in the forward pass, so the backward is one multiply and no intermediate is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from segbalance.losses.binary import binary_logit, expand_binary_grad


class _BinaryFocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, y, factor, alpha, gamma):  # type: ignore[override]
        d = binary_logit(logits)
        ell = torch.addcmul(d, d, y, value=-2.0)  # v = d (1 - 2y)
        torch._C._nn.softplus(ell, 1, 20, out=ell)
        p_t = torch.neg(ell).exp_()
        q = torch.sub(1.0, p_t)
        # per-voxel weight alpha_t * factor (None: all ones)
        weight = None
        if alpha is not None:
            a0, a1 = alpha
            weight = torch.mul(y, a1 - a0).add_(a0)
        if factor is not None:
            weight = factor if weight is None else weight.mul_(factor)
        if gamma == 0.0:
            q_gamma = None
            per_voxel = ell
        else:
            q_gamma = q * q if gamma == 2.0 else q.pow(gamma)
            per_voxel = q_gamma * ell
        total = (
            per_voxel.sum() if weight is None else torch.dot(per_voxel.view(-1), weight.view(-1))
        )
        del per_voxel
        # dL/dd = (1 - 2y) alpha_t q^gamma (gamma p_t l + q)
        grad = q if gamma == 0.0 else torch.addcmul(q, p_t, ell, value=gamma).mul_(q_gamma)
        grad.addcmul_(grad, y, value=-2.0)  # times (1 - 2y)
        if weight is not None:
            grad.mul_(weight)
        ctx.save_for_backward(grad)
        ctx.logits_shape = logits.shape
        return total

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return expand_binary_grad(grad * g, ctx.logits_shape), None, None, None, None


def binary_focal_sum(
    logits: Tensor,
    y: Tensor,
    *,
    gamma: float,
    alpha: tuple[float, float] | None,
    factor: Tensor | None,
) -> Tensor:
    """``sum f alpha_t (1 - p_t)^gamma BCE`` over all voxels (0-d, differentiable).

    Args:
        logits: ``(B, 1, *S)`` or ``(B, 2, *S)``.
        y: foreground labels as float ``(B, N)``.
        gamma: focusing exponent >= 0.
        alpha: ``(background weight, foreground weight)`` or None.
        factor: voxel factor ``(B, N)`` (weights x ignore mask) or None.
    """
    return _BinaryFocal.apply(logits, y, factor, alpha, float(gamma))
