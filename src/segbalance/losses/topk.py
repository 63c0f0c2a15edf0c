"""Exact top-k selection masks without sorting (top-K CE and top-K Dice, METHODS §1.7, §4).

``torch.topk`` of 10 % of a 128^3 batch costs as much as the CE itself. The k-th largest
value is found instead from a bracket: a strided sample (a fixed stride, no randomness)
is sorted to guess two values ``lo <= v_k <= hi``; one counting pass checks the guess, and
only the few values inside the bracket go to ``torch.kthvalue``. The result is exact (a
wrong guess falls back to ``kthvalue`` on the whole row); ties at the threshold keep the
lowest indices, so exactly k voxels are selected.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# rows shorter than this are selected directly; longer rows are sampled at about this size
_SAMPLE = 1 << 15


def kth_largest(values: Tensor, k: int) -> Tensor:
    """The k-th largest entry of a 1-D tensor (exact, 0-d), 1 <= k <= numel."""
    n = values.numel()
    stride = n // _SAMPLE
    if stride < 4:
        return torch.kthvalue(values, n - k + 1).values
    sample = torch.sort(values[::stride]).values
    m = sample.numel()
    # ascending rank of the k-th largest, scaled to the sample, +- 6 standard deviations
    frac = (n - k) / n
    centre = frac * m
    margin = 6.0 * math.sqrt(m * max(frac * (1.0 - frac), 1.0 / m)) + 8.0
    lo = sample[max(0, math.floor(centre - margin))]
    hi = sample[min(m - 1, math.ceil(centre + margin))]
    above = int(torch.count_nonzero(values > hi))
    band = (values >= lo) & (values <= hi)
    inside = int(torch.count_nonzero(band))
    # the k-th largest lies in [lo, hi] iff fewer than k lie above hi and enough inside
    if above < k <= above + inside:
        candidates = values[band]
        return torch.kthvalue(candidates, inside - (k - above) + 1).values
    return torch.kthvalue(values, n - k + 1).values


def top_k_row_mask(values: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly the k largest entries of a 1-D tensor (ties: lowest index).

    Entries that must never be chosen should be ``-inf`` (and k at most the number of
    finite entries). NaN entries count as the largest, as in ``torch.topk``.
    """
    n = values.numel()
    if k >= n:
        return torch.ones_like(values, dtype=torch.bool)
    if bool(torch.isnan(values.sum())):
        # NaN logits are not repaired (METHODS §0): select like torch.topk, NaN first
        mask = torch.zeros_like(values, dtype=torch.bool)
        mask[torch.topk(values, k, sorted=False).indices] = True
        return mask
    threshold = kth_largest(values, k)
    mask = values >= threshold
    if int(torch.count_nonzero(mask)) == k:
        return mask
    # ties at the threshold: everything above it, then the first equal ones by index
    above = values > threshold
    need = k - int(torch.count_nonzero(above))
    equal = values == threshold
    return above | (equal & (torch.cumsum(equal, 0) <= need))


def top_k_mask(values: Tensor, counts: list[int]) -> Tensor:
    """Row-wise top-k masks of a ``(R, n)`` tensor, ``counts[r]`` entries in row r (0: none)."""
    rows = [
        top_k_row_mask(values[r], c) if c > 0 else torch.zeros_like(values[r], dtype=torch.bool)
        for r, c in enumerate(counts)
    ]
    return torch.stack(rows)
