"""The top-k region of the fused binary core (top-K Dice, METHODS §4), selected while the
core's blocks are in cache: no separate pass over the volume, no index list of the whole
selection.

Per row b the region is the ``k_b`` voxels with the largest ``v = d (1 - 2y)`` (the voxel
BCE is increasing in v; ties keep the lowest index, as :func:`top_k_indices`). A strided
sample of the row brackets the k-th value between ``lo`` and ``hi``
(:mod:`segbalance.losses.topk`). In the core's block pass:

- the voxels with ``v > hi`` are all chosen. They form a bool mask, the *dense part*,
  which enters the block's sums and gradient like any region factor;
- the voxels in ``[lo, hi]`` (a few % of the row) are collected with their values.

After the pass the band's exact top ``k_b - #dense`` voxels are the *sparse part*,
gathered for their sums and scattered back in the backward. A row whose sample misjudged
(more than ``k_b`` values above ``hi``, or too few in the band) clears its dense part and
takes the exact selection of the whole row as its sparse part: the result is exact always.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from segbalance.losses.binary_block import CoreConfig, block_logit, region_grad, segment_sums
from segbalance.losses.topk import bracket_from_sample, sample_stride, top_k_indices
from segbalance.losses.workspace import scratch

_SAMPLE = 1 << 16  # voxels in the bracketing sample of a row
NUMPY_ON_CPU = True  # the CPU block selection in numpy (False: the torch code of other devices)
# a row that selects nothing: every comparison with NaN is False
_NOTHING = (math.nan, math.nan)


class TopRegion:
    """The top-k selection of one core call over ``(B, N)`` rows.

    Attributes:
        mask: bool ``(B, N)``, the dense part (filled block by block by :meth:`select_block`).
        flat: long ``(M,)`` flat ``(B * N)`` indices of the sparse part, ascending;
        rows, v, y: the row, ``v`` and label of each; sizes: voxels per row (all set by
            :meth:`finish`).
        fallback: rows whose dense part was cleared (exact selection in the sparse part).
    """

    def __init__(
        self,
        counts: Sequence[int],
        samples: Sequence[Tensor | None],
        n: int,
        valid: Tensor | None,
        device: torch.device,
    ) -> None:
        self.counts, self.n, self.valid = list(counts), n, valid
        self.mask = torch.empty((len(self.counts), n), dtype=torch.bool, device=device)
        bounds = [self._bounds(k, s) for k, s in zip(self.counts, samples, strict=True)]
        self._lo = np.array([[b[0]] for b in bounds])
        self._hi = np.array([[b[1]] for b in bounds])
        self._dense = np.zeros(len(self.counts), dtype=np.int64)
        self._band: list[tuple[Tensor, Tensor, Tensor]] = []  # (flat index, v, y) per block
        self.flat = self.rows = torch.zeros(0, dtype=torch.long, device=device)
        self.fallback: list[int] = []

    @staticmethod
    def stride(n: int) -> int | None:
        """Stride of the strided sample of a row of n voxels (None: no sample needed). The
        sample is 4x that of :func:`top_k_indices`: the band, whose indices every block
        extracts, is half as wide."""
        return sample_stride(n, _SAMPLE)

    def _bounds(self, k: int, sample: Tensor | None) -> tuple[float, float]:
        if k == 0:
            return _NOTHING
        if sample is None:  # a short row: the band is the whole row
            return -math.inf, math.inf
        lo, hi = bracket_from_sample(sample, self.n, k)
        return (-math.inf if lo is None else float(lo)), (math.inf if hi is None else float(hi))

    def select_block(self, v: Tensor, y: Tensor, rows: slice, cols: slice) -> Tensor:
        """The dense part of one block as a 0/1 factor ``(b, w)`` of ``v``'s dtype (a scratch
        buffer), recording the block's band. ``v``: the block's detached ``d (1 - 2y)``."""
        mask = self.mask[rows, cols]
        valid = None if self.valid is None else self.valid[rows, cols]
        # the bounds are sample values, exact in v's dtype (a float64 array would upcast v)
        dtype = np.float32 if v.dtype == torch.float32 else np.float64
        lo, hi = self._lo[rows].astype(dtype), self._hi[rows].astype(dtype)
        if v.device.type == "cpu" and NUMPY_ON_CPU:
            # numpy's comparisons into bool are ~5x faster than torch's on CPU
            vn, mn = v.numpy(), mask.numpy()
            ge = scratch("band", v, torch.bool).numpy()
            np.greater(vn, hi, out=mn)
            np.greater_equal(vn, lo, out=ge)
            if valid is not None:
                vm = valid.numpy()
                mn &= vm
                ge &= vm
            band = np.flatnonzero(np.not_equal(ge, mn, out=ge))  # [lo, hi]: ge less the mask
            local = torch.from_numpy(band)
            values = torch.from_numpy(vn.reshape(-1)[band])
            labels = torch.from_numpy(y.numpy().reshape(-1)[band])
            factor = scratch("factor", v).copy_(torch.from_numpy(mn.view(np.uint8)))
        else:
            lo_t, hi_t = (torch.as_tensor(x, device=v.device) for x in (lo, hi))
            torch.gt(v, hi_t, out=mask)
            ge = v >= lo_t
            if valid is not None:
                mask &= valid
                ge &= valid
            local = torch.nonzero((ge ^ mask).reshape(-1)).squeeze(1)
            values, labels = v.reshape(-1)[local], y.reshape(-1)[local]
            factor = mask.to(v.dtype)
        self._dense[rows] += factor.sum(1).to(torch.long).cpu().numpy()
        # flat (B * N) index of each band voxel; blocks run in flat order, so they ascend
        start = (rows.start or 0) * self.n + (cols.start or 0)
        if v.shape[0] > 1:  # a block of whole rows
            width = v.shape[1]
            local = local + torch.div(local, width, rounding_mode="floor") * (self.n - width)
        self._band.append((local.add(start), values, labels))
        return factor

    def block_factor(self, rows: slice, cols: slice, dtype: torch.dtype) -> Tensor:
        """The dense part of one block as a 0/1 factor (the backward's region factor)."""
        mask = self.mask[rows, cols]
        if mask.device.type == "cpu":
            u8 = torch.from_numpy(mask.numpy().view(np.uint8))
            return scratch("factor", u8, dtype).copy_(u8)
        return mask.to(dtype)

    def finish(self, row_v: Callable[[int], Tensor], y: Tensor) -> None:
        """Choose the sparse part of every row; ``row_v(b)``: the detached ``(N,)`` v of row b
        with ``-inf`` at ignored voxels (only called for a row whose sample misjudged);
        ``y``: the ``(B, N)`` labels."""
        idx, val, lab = (torch.cat(parts) for parts in zip(*self._band, strict=True))
        self._band = []
        starts = torch.searchsorted(
            idx, torch.arange(len(self.counts) + 1, device=idx.device) * self.n
        ).tolist()
        chosen, values, labels = [], [], []
        for b, k in enumerate(self.counts):
            need = k - int(self._dense[b])
            lo, hi = starts[b], starts[b + 1]
            if 0 <= need <= hi - lo:
                pick = top_k_indices(val[lo:hi], need, bracket=False).add_(lo)
                chosen.append(idx[pick])
                values.append(val[pick])
                labels.append(lab[pick])
                continue
            # the sample misjudged this row: the exact selection of the whole row, sparse
            self.fallback.append(b)
            self.mask[b] = False
            v = row_v(b)
            pick = top_k_indices(v, k)
            chosen.append(pick + b * self.n)
            values.append(v[pick])
            labels.append(y[b][pick])
        self.flat = torch.cat(chosen)
        self.rows = torch.div(self.flat, self.n, rounding_mode="floor")
        self.v, self.y = torch.cat(values), torch.cat(labels)
        self.sizes = [c.numel() for c in chosen]


def _row_v(z: Tensor, y: Tensor, valid: Tensor | None, b: int, cols: slice = slice(None)) -> Tensor:
    """The detached ``v = d (1 - 2y)`` of row b (columns ``cols``), ``-inf`` where ignored."""
    d = block_logit(z, slice(b, b + 1), cols)[0]
    v = torch.addcmul(d, d, y[b, cols], value=-2.0)
    return v if valid is None else v.masked_fill_(~valid[b, cols], -math.inf)


def top_region(z: Tensor, y: Tensor, valid: Tensor | None, counts: tuple[int, ...]) -> TopRegion:
    """The top-k region's bounds from a strided sample of every row (the block pass fills it)."""
    stride = TopRegion.stride(z.shape[2])
    samples = [
        None if stride is None else _row_v(z, y, valid, b, slice(None, None, stride))
        for b in range(z.shape[0])
    ]
    return TopRegion(counts, samples, z.shape[2], valid, z.device)


def _logit_index(top: TopRegion, n_classes: int, channel: int) -> Tensor:
    """Flat indices of the sparse part's voxels in channel ``channel`` of a contiguous
    ``(B, C, N)`` tensor (the logits' gradient)."""
    return torch.add(top.flat, top.rows, alpha=(n_classes - 1) * top.n).add_(channel * top.n)


def _take(x: Tensor, flat: Tensor) -> Tensor:
    return torch.index_select(x.reshape(-1), 0, flat)


def _sparse_inputs(top: TopRegion, fr: Tensor | None) -> tuple:
    """``d``, ``y`` and the region factor at the voxels of the sparse part, ``(M,)`` each
    (``d = v (1 - 2y)`` exactly for 0/1 labels: no gather from the logits)."""
    d = torch.addcmul(top.v, top.v, top.y, value=-2.0)
    return d, top.y, None if fr is None else _take(fr, top.flat)


def add_sparse_sums(totals: list, top: TopRegion, z, y, fr, valid, cfg: CoreConfig) -> list:
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
    sums = segment_sums(torch.stack(terms), top.sizes).T  # (B, T)
    per_slot = [sums[:, [5 + j, j]] if cfg.both else sums[:, j : j + 1] for j in range(4)]
    for slot, extra in zip((2, 3, 4, 5), per_slot, strict=True):
        if totals[slot] is not None:
            totals[slot] = totals[slot] + extra
    totals[6] = totals[6] + sums[:, 4:5]
    return totals


def add_sparse_grad(out: Tensor, top: TopRegion, fr, grads: tuple, cfg: CoreConfig) -> None:
    """Add the region gradient of the sparse part's voxels to ``out`` ``(B, C, N)``."""
    if top.rows.numel() == 0:
        return
    d, y_s, f = _sparse_inputs(top, fr)
    p = torch.sigmoid(d).unsqueeze(1)
    f = None if f is None else f.unsqueeze(1)
    g = [None if x is None else x[top.rows] for x in grads]
    r = region_grad(p, y_s.unsqueeze(1), f, *g, cfg, out=None)[:, 0]
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
