"""Fused binary path: every loss with C = 1 (sigmoid) or C = 2 (two-class softmax).

A two-class softmax is the sigmoid of the logit difference ``d = z_1 - z_0`` (METHODS §0),
and its log-probabilities are ``logsigmoid(+-d)``, so both cases run on one ``(B, N)``
logit. :class:`_BinaryCore` computes, in one forward with a hand-written backward:

    CE     sum fc l,  sum fc a l          (l = BCE(d + offset, y) = softplus((d + offset)(1 - 2y)))
    region sum fr p y, sum fr p, sum fr p^2, sum fr y, sum fr   (p = sigmoid(d); and the
           same for the background channel q = sigmoid(-d) when it is scored)

per sample (fc, fr: voxel factors; a: a 0/1 region indicator). On CPU it runs block by
block so that the temporaries stay in cache. Transcendental functions dominate the cost,
so each runs once: the CE is ``-log sigmoid(u)`` of the true-class logit ``u`` (one
sigmoid and one log, cheaper than a softplus), its voxel gradient is written in the
forward into the buffer that becomes the logits' gradient, and ``p`` is kept for the
backward (no sigmoid there). No two-channel tensor is materialised except that gradient.
The per-block kernels live in :mod:`segbalance.losses.binary_block`; a top-k region
(top-K Dice) is selected during the block pass by :mod:`segbalance.losses.binary_select`.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from segbalance.losses.binary_block import (
    CoreConfig,
    as_scalar,
    block_logit,
    ce_block,
    region_grad,
    rowdot,
    rowsum,
)
from segbalance.losses.binary_request import BinaryRequest, BinarySums
from segbalance.losses.binary_select import TopRegion, add_sparse_grad, add_sparse_sums, top_region
from segbalance.losses.workspace import scratch


def binary_logit(logits: Tensor) -> Tensor:
    """The one logit ``(B, N)``: ``z`` for C = 1, ``z_1 - z_0`` for C = 2 (not differentiable)."""
    batch, n_classes = int(logits.shape[0]), int(logits.shape[1])
    if n_classes == 1:
        return logits.reshape(batch, -1)
    z = logits.reshape(batch, 2, -1)
    return torch.sub(z[:, 1], z[:, 0])


def expand_binary_grad(grad: Tensor, logits_shape: torch.Size) -> Tensor:
    """Gradient w.r.t. the logits from the gradient w.r.t. ``d``: ``(+g)`` / ``(-g, +g)``."""
    if logits_shape[1] == 1:
        return grad.view(logits_shape)
    batch = grad.shape[0]
    out = grad.new_empty(batch, 2, grad.shape[1])
    out[:, 1].copy_(grad)
    torch.neg(grad, out=out[:, 0])
    return out.view(logits_shape)


#: voxels per block of the CPU core: the block's temporaries (~5 float32 buffers of 4 MB)
#: stay in the last-level cache, so only the inputs and the kept buffers travel to memory
BLOCK_VOXELS = 1 << 20


def _blocks(batch: int, n: int, device: torch.device) -> list[tuple[slice, slice]]:
    """(rows, columns) of the blocks the core runs on: on CPU, one row and up to
    :data:`BLOCK_VOXELS` columns each (memory-bound passes run from cache); else all at once."""
    if device.type != "cpu" or n <= BLOCK_VOXELS:
        return [(slice(0, batch), slice(0, n))]
    return [
        (slice(b, b + 1), slice(j, min(j + BLOCK_VOXELS, n)))
        for b in range(batch)
        for j in range(0, n, BLOCK_VOXELS)
    ]


def _part(x: Tensor | None, rows: slice, cols: slice) -> Tensor | None:
    return None if x is None else x[rows, cols]


def _block_sums(
    d, y, fc, fr, aux, cfg: CoreConfig, p_out, grad_out, select=None
) -> list[Tensor | None]:
    """The core's per-row sums of one block: ``[ce, ce_aux, inter, pred, pred_sq, ground,
    total]`` with shapes ``(b,)`` and ``(b, K)`` (None where not requested). ``p_out``
    (region) receives ``sigmoid(d)``, ``grad_out`` (CE) the voxel CE gradient; ``select``
    (top-k region) maps the block's ``v`` to the 0/1 factor of its dense part."""
    batch = d.shape[0]
    ce = ce_aux = None
    v = None
    if select is not None:
        v = torch.addcmul(d, d, y, value=-2.0, out=scratch("v", d))
        fr = _times(fr, select(v, y))
    if cfg.ce:
        log_pt = ce_block(d, y, cfg.offset, grad_out, v)
        ce = -(rowsum(log_pt) if fc is None else rowdot(log_pt, fc))
        if aux is not None:
            ce_aux = -rowdot(log_pt, aux if fc is None else aux * fc)
        del log_pt
    if not cfg.region:
        return [ce, ce_aux, None, None, None, None, None]
    if cfg.p_from_grad:
        p = torch.add(grad_out, y, out=scratch("p", d))
    else:
        p = torch.sigmoid(d, out=p_out)
    fr = _modulated(fr, p, y, cfg)
    pf = p if fr is None else torch.mul(p, fr, out=scratch("pf", d))
    cols = [(rowdot(pf, y), rowsum(pf), rowdot(pf, p) if cfg.squared else None)]
    if fr is None:
        ground1 = rowsum(y)
        total = torch.full((batch, 1), float(d.shape[1]), dtype=d.dtype, device=d.device)
    else:
        ground1 = rowdot(fr, y)
        total = rowsum(fr).unsqueeze(1)
    del pf
    grounds = [ground1]
    if cfg.both:
        # unweighted: N - sum y is exact (counts below 2^24); weighted: directly, not
        # sum fr - sum fr y, so that an empty background gives 0 exactly
        ground0 = float(d.shape[1]) - ground1 if fr is None else rowdot(fr, torch.sub(1.0, y))
        grounds.insert(0, ground0)
        cols.insert(0, _background_sums(d, p, y, fr, cols[0], total, ground0, cfg))
    inter = torch.stack([c[0] for c in cols], 1)
    pred = torch.stack([c[1] for c in cols], 1)
    pred_sq = torch.stack([c[2] for c in cols], 1) if cfg.squared else None
    return [ce, ce_aux, inter, pred, pred_sq, torch.stack(grounds, 1), total]


def _background_sums(d, p, y, fr, fg, total, ground0, cfg: CoreConfig) -> tuple:
    """``(sum fr q (1 - y), sum fr q, sum fr q^2 or None)`` of the background ``q = 1 - p``.

    From the foreground sums (no second sigmoid) when, in every row, ``P = sum fr p`` is at
    most ``c sum fr`` and at most ``G0 = sum fr (1 - y)``, and ``sum fr p (1 - y) <= c G0``,
    with c = 3/4 (1/2 for the squared sums). Each difference then keeps at least a quarter
    of its minuend and subtracts at most about as much, so its rounding error stays within
    about ten float epsilons of the result (small foregrounds: the usual case). Otherwise
    (e.g. a confidently all-foreground sample, where ``q`` is tiny) from ``sigmoid(-d)``
    itself, not ``1 - p``, which would lose ``q`` entirely."""
    inter1, pred1, sq1 = fg
    total = total[:, 0]
    c = 0.5 if cfg.squared else 0.75
    bounded = (pred1 <= c * total) & (pred1 <= ground0) & (pred1 - inter1 <= c * ground0)
    if bool(bounded.all()):
        pred0 = total - pred1
        inter0 = ground0 - (pred1 - inter1)  # sum fr (1 - y) - sum fr p (1 - y)
        sq0 = total - 2 * pred1 + sq1 if cfg.squared else None
        return inter0, pred0, sq0
    q = torch.sigmoid(torch.neg(d))
    qf = q if fr is None else q * fr
    pred0 = rowsum(qf)
    # sum qf (1 - y) = sum qf - sum qf y: error <= eps * pred0, harmless in a ratio
    # whose denominator holds pred0
    return pred0 - rowdot(qf, y), pred0, rowdot(qf, q) if cfg.squared else None


def _modulated(fr: Tensor | None, p: Tensor, y: Tensor, cfg: CoreConfig) -> Tensor | None:
    """pm_dice: the region factor times the constant modulation ``|y - sg(p)|^gamma``."""
    if cfg.modulate is None:
        return fr
    m = torch.sub(p, y)
    m = m.mul_(m) if cfg.modulate == 2.0 else m.abs_().pow_(cfg.modulate)
    return m if fr is None else m.mul_(fr)


class _BinaryCore(torch.autograd.Function):
    """The fused sums, block by block (:func:`_blocks`). The forward keeps ``sigmoid(d)``
    (region sums) and writes the voxel CE gradient into the buffer that becomes the logits'
    gradient, so the backward runs no transcendental function."""

    @staticmethod
    def forward(ctx, logits, y, fc, fr, aux, valid, cfg: CoreConfig):  # type: ignore[override]
        batch, n_classes = int(logits.shape[0]), int(logits.shape[1])
        z = logits.reshape(batch, n_classes, -1)
        blocks = _blocks(batch, z.shape[2], z.device)
        # the logits' gradient; with CE its foreground slot holds sigmoid(d + offset) - y
        out = torch.empty_like(z, memory_format=torch.contiguous_format) if cfg.ce else None
        probs = z.new_empty(batch, z.shape[2]) if cfg.region and not cfg.p_from_grad else None
        top = None if cfg.counts is None else top_region(z, y, valid, cfg.counts)
        parts = [
            _block_sums(
                block_logit(z, rows, cols, reuse=True),
                y[rows, cols],
                *(_part(x, rows, cols) for x in (fc, fr, aux)),
                cfg,
                _part(probs, rows, cols),
                None if out is None else out[rows, n_classes - 1, cols],
                None if top is None else functools.partial(top.select_block, rows=rows, cols=cols),
            )
            for rows, cols in blocks
        ]
        totals = parts[0] if len(blocks) == 1 else _accumulate(parts, blocks, batch)
        if top is not None:
            totals = add_sparse_sums(totals, top, z, y, fr, valid, cfg)
        if cfg.region:
            ctx.mark_non_differentiable(totals[5], totals[6])
        # z: the logits as (B, C, N), a view unless the memory format forced a copy
        ctx.save_for_backward(z, y, fc, fr, aux)
        ctx.cfg, ctx.logits_shape = cfg, logits.shape
        ctx.probs, ctx.out, ctx.top = probs, out, top
        return tuple(totals)

    @staticmethod
    def backward(ctx, g_ce, g_aux, g_inter, g_pred, g_sq, g_ground, g_total):  # type: ignore[override]
        z, y, fc, fr, aux = ctx.saved_tensors
        cfg: CoreConfig = ctx.cfg
        use_region = cfg.region and any(g is not None for g in (g_inter, g_pred, g_sq))
        use_ce = cfg.ce and (g_ce is not None or g_aux is not None)
        if not (use_region or use_ce):
            return (None,) * 7
        top: TopRegion | None = ctx.top
        batch, n_classes = int(z.shape[0]), int(z.shape[1])
        # the kept CE gradient is consumed in place (it becomes the returned gradient); a
        # second backward through the graph (retain_graph, gradcheck) recomputes it
        out, ctx.out = ctx.out, None
        fresh = out is None
        if fresh:
            out = torch.empty_like(z, memory_format=torch.contiguous_format)
        for rows, cols in _blocks(batch, z.shape[2], z.device):
            y_b, fc_b, fr_b, aux_b = (_part(x, rows, cols) for x in (y, fc, fr, aux))
            dest = out[rows, n_classes - 1, cols]
            if fresh and (use_ce or (use_region and cfg.p_from_grad)):
                ce_block(block_logit(z, rows, cols, reuse=True), y_b, cfg.offset, dest)
            coef = _ce_coefficient(g_ce, g_aux, aux_b, fc_b, rows) if use_ce else None
            if not use_region:
                dest.mul_(coef)
            else:
                # p first: with p_from_grad it is read off the unscaled CE gradient
                if cfg.p_from_grad:
                    p = torch.add(dest, y_b, out=scratch("p", dest))
                else:
                    p = ctx.probs[rows, cols]
                fr_b = _modulated(fr_b, p, y_b, cfg)
                if top is not None:
                    fr_b = _times(fr_b, top.block_factor(rows, cols, p.dtype))
                grads = [_rows(g, rows) for g in (g_inter, g_pred, g_sq)]
                region = region_grad(p, y_b, fr_b, *grads, cfg, out=None if use_ce else dest)
                if isinstance(coef, float):
                    torch.add(region, dest, alpha=coef, out=dest)
                elif coef is not None:
                    dest.mul_(coef).add_(region)
            if n_classes == 2:
                torch.neg(dest, out=out[rows, 0, cols])
        if use_region and top is not None:
            add_sparse_grad(out, top, fr, (g_inter, g_pred, g_sq), cfg)
        return out.view(ctx.logits_shape), None, None, None, None, None, None


def _accumulate(parts: list[list], blocks: list[tuple[slice, slice]], batch: int) -> list:
    """Per-row totals of the blocks' sums (each block covers one row)."""
    totals = [None if x is None else x.new_zeros((batch, *x.shape[1:])) for x in parts[0]]
    for part, (rows, _) in zip(parts, blocks, strict=True):
        for acc, x in zip(totals, part, strict=True):
            if x is not None:
                acc[rows] += x
    return totals


def _rows(g: Tensor | None, rows: slice) -> Tensor | None:
    return None if g is None else g[rows]


def _ce_coefficient(g_ce, g_aux, aux, fc, rows: slice) -> float | Tensor:
    """The factor of the voxel CE gradient: ``fc (g_ce + a g_aux)``, a number for a one-row
    block without voxel factors, else ``(b, 1)`` or ``(b, n)``."""
    g = _rows(g_ce, rows)
    h = torch.zeros_like(_rows(g_aux, rows)) if g is None else g
    h = h.view(-1, 1)
    if aux is not None and g_aux is not None:
        h = torch.addcmul(h, aux, _rows(g_aux, rows).view(-1, 1))
    if fc is not None:
        h = h * fc
    return as_scalar(h)


def binary_sums(
    logits: Tensor,
    y: Tensor,
    request: BinaryRequest,
    *,
    factor: Tensor | None = None,
    valid: Tensor | None = None,
) -> BinarySums:
    """Run the fused binary core for one request.

    Args:
        logits: ``(B, 1, *S)`` or ``(B, 2, *S)`` float32/float64.
        y: foreground labels as float ``(B, N)`` (0/1; ignored voxels 0).
        request: what to compute (:class:`BinaryRequest`).
        factor: voxel factor (weights x ignore mask) ``(B, N)`` or None.
        valid: bool ``(B, N)`` ignore mask (False: ignored) or None; a top-k region
            (``request.region_counts``) never selects ignored voxels.

    Returns:
        :class:`BinarySums`, differentiable w.r.t. ``logits``.
    """
    fc = _times(factor, request.ce_mask) if request.ce else None
    fr = _times(factor, request.region_mask) if request.region else None
    cfg = CoreConfig(
        ce=request.ce,
        offset=float(request.offset),
        region=request.region,
        squared=request.squared,
        both=request.both,
        modulate=None if request.modulate is None else float(request.modulate),
        counts=request.region_counts,
    )
    if cfg.counts is not None and (cfg.modulate is not None or len(cfg.counts) != y.shape[0]):
        raise ValueError(
            f"region_counts: expected one count per sample ({y.shape[0]}) and no modulation "
            f"but got {len(cfg.counts)} counts, modulate={cfg.modulate}"
        )
    out = _BinaryCore.apply(logits, y, fc, fr, request.aux, valid, cfg)
    return BinarySums(*out)


def _times(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a * b
