"""Top-K CE for C <= 2 on the selected voxels only (METHODS §1.7); top-K Dice selects
inside the core's block pass (:mod:`segbalance.losses.binary_select`).

The voxel BCE is ``softplus(v)`` with ``v = d (1 - 2y)`` and softplus is increasing, so the
k largest CEs are the k largest ``v`` (a valid tie rule; no softplus over the volume).
Once the indices are chosen (exact, :mod:`segbalance.losses.topk`), the loss and its
backward touch only those ~K % of voxels (the gradient is one scatter into a zero tensor).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from segbalance.losses.binary_block import segment_sums
from segbalance.losses.inputs import LossInputs
from segbalance.losses.topk import top_k_indices


def scatter_binary_grad(r: Tensor, flat_idx: Tensor, shape: torch.Size) -> Tensor:
    """The logits' gradient from ``r = dL/dd`` at distinct flat voxel indices of ``(B, N)``:
    ``r`` on channel 0 (C = 1), or ``+r`` on channel 1 and ``-r`` on channel 0 (C = 2)."""
    out = r.new_zeros(shape.numel())
    if shape[1] == 1:
        out[flat_idx] = r
    else:
        n = out.numel() // (2 * shape[0])
        first = torch.add(flat_idx, torch.div(flat_idx, n, rounding_mode="floor"), alpha=n)
        out[first + n] = r
        out[first] = r.neg()
    return out.view(shape)


class _SelectedBCE(torch.autograd.Function):
    """Per selected voxel ``w * BCE = w * softplus(v)`` from the detached ``v = d (1 - 2y)``;
    the backward ``(1 - 2y) sigmoid(v) = sigmoid(d) - y`` is scattered straight into the
    logits' gradient (+ on channel 1, - on channel 0 for C = 2)."""

    @staticmethod
    def forward(ctx, logits, v_sel, y_sel, w_sel, flat_idx):  # type: ignore[override]
        ell = F.softplus(v_sel)
        if w_sel is not None:
            ell = ell.mul_(w_sel)
        ctx.save_for_backward(v_sel, y_sel, w_sel, flat_idx)
        ctx.logits_shape = logits.shape
        return ell

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        v_sel, y_sel, w_sel, idx = ctx.saved_tensors
        r = torch.sigmoid(v_sel)
        r = r.addcmul_(r, y_sel, value=-2.0).mul_(grad)
        if w_sel is not None:
            r = r.mul_(w_sel)
        return scatter_binary_grad(r, idx, ctx.logits_shape), None, None, None, None


def select_rows(row_scores: Callable[[int], Tensor], counts: list[int], n: int) -> list[Tensor]:
    """Flat ``(B*N)`` indices of the ``counts[b]`` largest scores of each row ``b``
    (``row_scores(b)``: the ``(N,)`` scores of sample b)."""
    return [top_k_indices(row_scores(b), c).add_(b * n) for b, c in enumerate(counts)]


def topk_ce_binary(inputs: LossInputs, counts: list[int], per_sample: bool) -> Tensor:
    """Mean CE of the selected voxels: ``counts`` = [k] for the whole batch, else per row."""
    batch = inputs.target.shape[0]
    with torch.no_grad():
        if inputs.weight is None:
            scores = inputs.binary_v
        else:
            # weights multiply the CE before the selection: rank w * l itself
            scores = inputs.binary_voxel_ce * inputs.weight.reshape(batch, -1)
            if inputs.valid is not None:
                scores = scores.masked_fill(~inputs.valid.reshape(batch, -1), float("-inf"))
        if per_sample:
            rows = select_rows(scores.__getitem__, counts, scores.shape[1])
        else:
            rows = [top_k_indices(scores.reshape(-1), counts[0])]
        idx = rows[0] if len(rows) == 1 else torch.cat(rows)
    w_sel = None if inputs.weight is None else inputs.weight.reshape(-1)[idx]
    v_sel = inputs.binary_v.reshape(-1)[idx]
    y_sel = inputs.binary_y.reshape(-1)[idx]
    ell = _SelectedBCE.apply(inputs.logits, v_sel, y_sel, w_sel, idx)
    if not per_sample:
        return ell.sum() / counts[0]
    sums = segment_sums(ell.unsqueeze(0), [r.numel() for r in rows])[0]
    kept = [b for b, c in enumerate(counts) if c]
    k = torch.tensor([counts[b] for b in kept], dtype=ell.dtype, device=ell.device)
    return (sums[kept] / k).mean()
