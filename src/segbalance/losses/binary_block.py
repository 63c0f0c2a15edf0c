"""Per-block kernels of the fused binary core (:mod:`segbalance.losses.binary`): the
block's logit, its CE with the gradient written in the forward, the region gradient, and
the row reductions. Shared by the core and the top-k region
(:mod:`segbalance.losses.binary_select`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from segbalance.losses.workspace import scratch


def rowsum(x: Tensor) -> Tensor:
    """Sum over the last axis of a ``(B, N)`` tensor -> ``(B,)``."""
    return x.sum(1)


def rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot products of ``(B, N)`` tensors -> ``(B,)`` (BLAS, no temporaries)."""
    a, b = a.contiguous(), b.contiguous()
    return torch.stack([torch.dot(a[i], b[i]) for i in range(a.shape[0])])


@dataclass(frozen=True)
class CoreConfig:
    """What one core call computes (built from a :class:`BinaryRequest`)."""

    ce: bool
    offset: float
    region: bool
    squared: bool
    both: bool
    modulate: float | None
    counts: tuple[int, ...] | None = None  # top-k region: voxels per row

    @property
    def p_from_grad(self) -> bool:
        """The top-k region reads ``p = sigmoid(d)`` off the CE gradient ``sigmoid(d) - y``
        (no second sigmoid, no kept probabilities): absolute error ~ the float spacing at
        1 (3e-8 in float32), harmless for the squared Dice of the largest-CE voxels."""
        return self.counts is not None and self.ce and self.offset == 0.0


def block_logit(z: Tensor, rows: slice, cols: slice, reuse: bool = False) -> Tensor:
    """``d`` of one block from the logits viewed as ``(B, C, N)`` (``reuse``: into the
    block's scratch buffer)."""
    if z.shape[1] == 1:
        return z[rows, 0, cols]
    one = z[rows, 1, cols]
    return torch.sub(one, z[rows, 0, cols], out=scratch("d", one) if reuse else None)


def log_pt_floor(dtype: torch.dtype) -> float:
    """A true-class logit below which ``sigmoid`` would underflow (float32: 1.8e-35 at -80)."""
    return -80.0 if dtype != torch.float64 else -700.0


def ce_block(
    d: Tensor, y: Tensor, offset: float, grad_out: Tensor, v: Tensor | None = None
) -> Tensor:
    """``log p_t`` of one block (the voxel BCE is its negative), writing the voxel CE's
    gradient w.r.t. ``d``, ``sigmoid(d + offset) - y``, into ``grad_out`` (``v``: the
    block's ``d (1 - 2y)`` if already at hand).

    One sigmoid and one log: a softplus costs about as much as both, and the backward would
    need another sigmoid."""
    u = scratch("u", d)
    if v is not None and offset == 0.0:
        torch.neg(v, out=u)  # exactly -(d (1 - 2y)) for 0/1 labels
    else:
        torch.neg(d, out=u) if offset == 0.0 else torch.sub(d, -offset, out=u).neg_()
        u.addcmul_(u, y, value=-2.0)  # the true class's logit (d + offset)(2y - 1)
    floor = log_pt_floor(u.dtype)
    # a min (one read) decides whether any p_t would underflow: rarely, so no clamp pass
    clamped = torch.clamp_min(u, floor) if bool(torch.amin(u) < floor) else u
    pt = torch.sigmoid(clamped, out=scratch("pt", d))
    grad = torch.sub(pt, 1.0, out=grad_out)
    grad.addcmul_(grad, y, value=-2.0).neg_()  # (1 - 2y)(1 - p_t) = sigmoid(d + offset) - y
    log_pt = pt.log_()
    # below the floor log sigmoid(u) = log sigmoid(floor) + (u - floor) to float precision
    return log_pt if clamped is u else log_pt.add_(u).sub_(clamped)


def as_scalar(x: Tensor) -> float | Tensor:
    """A ``(1, 1)`` coefficient as a Python number (a one-row block: scalar kernels, no
    broadcasting), else unchanged ``(b, 1)``."""
    return float(x) if x.numel() == 1 else x


def grad_column(g: Tensor | None, k: int, like: Tensor) -> Tensor:
    """Column k of an incoming ``(B, K)`` gradient as ``(B, 1)`` (zeros if unused)."""
    if g is None:
        return like.new_zeros(like.shape[0], 1)
    return g[:, k : k + 1]


def region_grad(p, y, fr, g_inter, g_pred, g_sq, cfg: CoreConfig, out: Tensor | None) -> Tensor:
    fg = 1 if cfg.both else 0
    # d/dd of the foreground sums: fr p (1-p) [gP1 + y gI1 + 2 p gQ1]; the background sums
    # (q = 1 - p, ybar = 1 - y) enter with the opposite sign: fold both into a + b y + c p
    a = grad_column(g_pred, fg, p)
    b = grad_column(g_inter, fg, p)
    c = 2.0 * grad_column(g_sq, fg, p) if cfg.squared else None
    if cfg.both:
        a = a - grad_column(g_pred, 0, p) - grad_column(g_inter, 0, p)
        b = b + grad_column(g_inter, 0, p)
        if cfg.squared:
            gq0 = 2.0 * grad_column(g_sq, 0, p)
            a = a - gq0
            c = c + gq0
    tmp = torch.mul(y, as_scalar(b), out=scratch("tmp", p) if out is None else out)
    tmp.add_(as_scalar(a))
    if c is not None:
        c = as_scalar(c)
        tmp = tmp.add_(p, alpha=c) if isinstance(c, float) else tmp.addcmul_(p, c)
    if fr is not None:
        tmp.mul_(fr)
    return torch.ops.aten.sigmoid_backward.grad_input(tmp, p, grad_input=tmp)


def segment_sums(values: Tensor, sizes: list[int]) -> Tensor:
    """Sums of consecutive segments: ``(T, M)`` with ``sum(sizes) = M`` -> ``(T, len(sizes))``."""
    if len(set(sizes)) == 1 and sizes[0] > 0:
        return values.view(values.shape[0], len(sizes), -1).sum(-1)
    rows = torch.repeat_interleave(
        torch.arange(len(sizes), device=values.device),
        torch.tensor(sizes, device=values.device),
    )
    out = values.new_zeros(values.shape[0], len(sizes))
    return out.index_add(1, rows, values)
