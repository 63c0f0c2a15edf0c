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
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from segbalance.losses.binary_request import BinaryRequest, BinarySums
from segbalance.losses.binary_select import TopRegion
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


def rowsum(x: Tensor) -> Tensor:
    """Sum over the last axis of a ``(B, N)`` tensor -> ``(B,)``."""
    return x.sum(1)


def rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot products of ``(B, N)`` tensors -> ``(B,)`` (BLAS, no temporaries)."""
    a, b = a.contiguous(), b.contiguous()
    return torch.stack([torch.dot(a[i], b[i]) for i in range(a.shape[0])])


@dataclass(frozen=True)
class _Config:
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


def _block_logit(z: Tensor, rows: slice, cols: slice, reuse: bool = False) -> Tensor:
    """``d`` of one block from the logits viewed as ``(B, C, N)`` (``reuse``: into the
    block's scratch buffer)."""
    if z.shape[1] == 1:
        return z[rows, 0, cols]
    one = z[rows, 1, cols]
    return torch.sub(one, z[rows, 0, cols], out=scratch("d", one) if reuse else None)


def _part(x: Tensor | None, rows: slice, cols: slice) -> Tensor | None:
    return None if x is None else x[rows, cols]


def _log_pt_floor(dtype: torch.dtype) -> float:
    """A true-class logit below which ``sigmoid`` would underflow (float32: 1.8e-35 at -80)."""
    return -80.0 if dtype != torch.float64 else -700.0


def _ce_block(
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
    floor = _log_pt_floor(u.dtype)
    # a min (one read) decides whether any p_t would underflow: rarely, so no clamp pass
    clamped = torch.clamp_min(u, floor) if bool(torch.amin(u) < floor) else u
    pt = torch.sigmoid(clamped, out=scratch("pt", d))
    grad = torch.sub(pt, 1.0, out=grad_out)
    grad.addcmul_(grad, y, value=-2.0).neg_()  # (1 - 2y)(1 - p_t) = sigmoid(d + offset) - y
    log_pt = pt.log_()
    # below the floor log sigmoid(u) = log sigmoid(floor) + (u - floor) to float precision
    return log_pt if clamped is u else log_pt.add_(u).sub_(clamped)


def _block_sums(
    d, y, fc, fr, aux, cfg: _Config, p_out, grad_out, select=None
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
        chosen = select(v, y)
        fr = chosen if fr is None else fr * chosen
    if cfg.ce:
        log_pt = _ce_block(d, y, cfg.offset, grad_out, v)
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


def _background_sums(d, p, y, fr, fg, total, ground0, cfg: _Config) -> tuple:
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


def _modulated(fr: Tensor | None, p: Tensor, y: Tensor, cfg: _Config) -> Tensor | None:
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
    def forward(ctx, logits, y, fc, fr, aux, valid, cfg: _Config):  # type: ignore[override]
        batch, n_classes = int(logits.shape[0]), int(logits.shape[1])
        z = logits.reshape(batch, n_classes, -1)
        blocks = _blocks(batch, z.shape[2], z.device)
        # the logits' gradient; with CE its foreground slot holds sigmoid(d + offset) - y
        out = torch.empty_like(z, memory_format=torch.contiguous_format) if cfg.ce else None
        probs = z.new_empty(batch, z.shape[2]) if cfg.region and not cfg.p_from_grad else None
        top = None if cfg.counts is None else _top_region(z, y, valid, cfg.counts)
        parts = [
            _block_sums(
                _block_logit(z, rows, cols, reuse=True),
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
            totals = _add_sparse_sums(totals, top, z, y, fr, valid, cfg)
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
        cfg: _Config = ctx.cfg
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
                _ce_block(_block_logit(z, rows, cols, reuse=True), y_b, cfg.offset, dest)
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
                    chosen = top.block_factor(rows, cols, p.dtype)
                    fr_b = chosen if fr_b is None else fr_b * chosen
                grads = [_rows(g, rows) for g in (g_inter, g_pred, g_sq)]
                region = _region_grad(p, y_b, fr_b, *grads, cfg, out=None if use_ce else dest)
                if isinstance(coef, float):
                    torch.add(region, dest, alpha=coef, out=dest)
                elif coef is not None:
                    dest.mul_(coef).add_(region)
            if n_classes == 2:
                torch.neg(dest, out=out[rows, 0, cols])
        if use_region and top is not None:
            _add_sparse_grad(out, top, z, y, fr, (g_inter, g_pred, g_sq), cfg)
        return out.view(ctx.logits_shape), None, None, None, None, None, None


def _row_v(z: Tensor, y: Tensor, valid: Tensor | None, b: int, cols: slice = slice(None)) -> Tensor:
    """The detached ``v = d (1 - 2y)`` of row b (columns ``cols``), ``-inf`` where ignored."""
    d = _block_logit(z, slice(b, b + 1), cols)[0]
    v = torch.addcmul(d, d, y[b, cols], value=-2.0)
    return v if valid is None else v.masked_fill_(~valid[b, cols], -math.inf)


def _top_region(z: Tensor, y: Tensor, valid: Tensor | None, counts: tuple[int, ...]) -> TopRegion:
    """The top-k region's bounds from a strided sample of every row (the block pass fills it)."""
    stride = TopRegion.stride(z.shape[2])
    samples = [
        None if stride is None else _row_v(z, y, valid, b, slice(None, None, stride))
        for b in range(z.shape[0])
    ]
    return TopRegion(counts, samples, z.shape[2], valid, z.device)


def _logit_index(top: TopRegion, n_classes: int, channel: int) -> Tensor:
    """Flat indices into the contiguous ``(B, C, N)`` logits of the sparse part's voxels."""
    return torch.add(top.flat, top.rows, alpha=(n_classes - 1) * top.n).add_(channel * top.n)


def _take(x: Tensor, flat: Tensor) -> Tensor:
    return torch.index_select(x.reshape(-1), 0, flat)


def _sparse_inputs(top: TopRegion, fr: Tensor | None) -> tuple:
    """``d``, ``y`` and the region factor at the voxels of the sparse part, ``(M,)`` each
    (``d = v (1 - 2y)`` exactly for 0/1 labels: no gather from the logits)."""
    d = torch.addcmul(top.v, top.v, top.y, value=-2.0)
    return d, top.y, None if fr is None else _take(fr, top.flat)


def _add_sparse_sums(totals: list, top: TopRegion, z, y, fr, valid, cfg: _Config) -> list:
    """Complete the dense part's region sums with the sparse part (after choosing it)."""
    top.finish(lambda b: _row_v(z, y, valid, b), y)
    totals = list(totals)
    if top.fallback:  # those rows' dense part was cleared: so are its sums
        rows = torch.tensor(top.fallback, device=z.device)
        totals[2:] = [None if x is None else x.index_fill(0, rows, 0.0) for x in totals[2:]]
    d, y_s, f = _sparse_inputs(top, fr)
    p = torch.sigmoid(d)
    pf = p if f is None else p * f
    f1 = torch.ones_like(p) if f is None else f
    # per voxel, foreground: inter, pred, pred_sq, ground; then the total of the factor
    terms = [pf * y_s, pf, pf * p, f1 * y_s, f1]
    if cfg.both:
        q = torch.sigmoid(torch.neg(d))  # exact, not 1 - p
        qf = q if f is None else q * f
        ybar = 1.0 - y_s
        terms += [qf * ybar, qf, qf * q, f1 * ybar]
    sums = top.row_sums(torch.stack(terms))  # (B, T)
    per_slot = [sums[:, [5 + j, j]] if cfg.both else sums[:, j : j + 1] for j in range(4)]
    for slot, extra in zip((2, 3, 4, 5), per_slot, strict=True):
        if totals[slot] is not None:
            totals[slot] = totals[slot] + extra
    totals[6] = totals[6] + sums[:, 4:5]
    return totals


def _add_sparse_grad(out: Tensor, top: TopRegion, z, y, fr, grads: tuple, cfg: _Config) -> None:
    """Add the region gradient of the sparse part's voxels to ``out`` ``(B, C, N)``."""
    if top.rows.numel() == 0:
        return
    d, y_s, f = _sparse_inputs(top, fr)
    p = torch.sigmoid(d).unsqueeze(1)
    f = None if f is None else f.unsqueeze(1)
    g = [None if x is None else x[top.rows] for x in grads]
    r = _region_grad(p, y_s.unsqueeze(1), f, *g, cfg, out=None)[:, 0]
    n_classes, flat_out = out.shape[1], out.view(-1)  # out is contiguous
    index = _logit_index(top, n_classes, n_classes - 1)
    _scatter_add(flat_out, index, r)
    if n_classes == 2:
        _scatter_add(flat_out, index - top.n, r.neg())  # channel 0 sits n voxels earlier


def _scatter_add(flat: Tensor, index: Tensor, values: Tensor) -> None:
    """``flat[index] += values`` at distinct indices (numpy's ``add.at`` on CPU: ~2x faster)."""
    if flat.device.type == "cpu":
        np.add.at(flat.numpy(), index.numpy(), values.contiguous().numpy())
    else:
        flat.index_add_(0, index, values)


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


def _scalar(x: Tensor) -> float | Tensor:
    """A ``(1, 1)`` coefficient as a Python number (a one-row block: scalar kernels, no
    broadcasting), else unchanged ``(b, 1)``."""
    return float(x) if x.numel() == 1 else x


def _column(g: Tensor | None, k: int, like: Tensor) -> Tensor:
    """Column k of an incoming ``(B, K)`` gradient as ``(B, 1)`` (zeros if unused)."""
    if g is None:
        return like.new_zeros(like.shape[0], 1)
    return g[:, k : k + 1]


def _region_grad(p, y, fr, g_inter, g_pred, g_sq, cfg: _Config, out: Tensor | None) -> Tensor:
    fg = 1 if cfg.both else 0
    # d/dd of the foreground sums: fr p (1-p) [gP1 + y gI1 + 2 p gQ1]; the background sums
    # (q = 1 - p, ybar = 1 - y) enter with the opposite sign: fold both into a + b y + c p
    a = _column(g_pred, fg, p)
    b = _column(g_inter, fg, p)
    c = 2.0 * _column(g_sq, fg, p) if cfg.squared else None
    if cfg.both:
        a = a - _column(g_pred, 0, p) - _column(g_inter, 0, p)
        b = b + _column(g_inter, 0, p)
        if cfg.squared:
            gq0 = 2.0 * _column(g_sq, 0, p)
            a = a - gq0
            c = c + gq0
    tmp = torch.mul(y, _scalar(b), out=scratch("tmp", p) if out is None else out)
    tmp.add_(_scalar(a))
    if c is not None:
        c = _scalar(c)
        tmp = tmp.add_(p, alpha=c) if isinstance(c, float) else tmp.addcmul_(p, c)
    if fr is not None:
        tmp.mul_(fr)
    return torch.ops.aten.sigmoid_backward.grad_input(tmp, p, grad_input=tmp)


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
    return _scalar(h)


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
    cfg = _Config(
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
