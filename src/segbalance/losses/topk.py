"""Exact top-k selection without sorting (top-K CE and top-K Dice, METHODS §1.7, §4).

``torch.topk`` of 10 % of a 128^3 batch costs as much as the CE itself. Here a strided
sample (fixed stride, no randomness) brackets the k-th largest value between ``lo`` and
``hi``; one pass collects the indices of the values ``>= lo`` (slightly more than k of
them), those above ``hi`` are all chosen, and a quickselect finds the threshold in
the narrow band between. The result is exact: a wrong guess (fewer than k values
``>= lo``, or k or more above ``hi``) falls back to the whole row or to all candidates.
Ties at the threshold keep the lowest indices, so exactly k entries are selected.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# rows shorter than this are selected directly; longer rows are sampled at about this size
_SAMPLE = 1 << 14
_NUMPY = (torch.float32, torch.float64)  # dtypes whose selection runs in numpy on CPU


def _flat_true(mask: Tensor) -> Tensor:
    """Ascending indices of the True entries of a 1-D bool tensor. On CPU numpy's
    ``flatnonzero`` takes about two thirds of the time of ``torch.nonzero``."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.detach().numpy()))
    return torch.nonzero(mask).squeeze(1)


def _kth_smallest(x: Tensor, j: int) -> Tensor:
    """The j-th smallest entry (1-based) of a 1-D tensor as a 0-d tensor (``kthvalue``); on
    CPU numpy's introselect, several times faster than ``torch.kthvalue`` there."""
    if x.device.type == "cpu" and x.dtype in _NUMPY:
        return torch.from_numpy(np.partition(x.detach().numpy(), j - 1)[j - 1 : j])[0]
    return torch.kthvalue(x, j).values


def _prime_at_most(s: int) -> int:
    """The largest prime <= s (s >= 2), by trial division (s is at most a few thousand)."""
    while any(s % f == 0 for f in range(2, math.isqrt(s) + 1)):
        s -= 1
    return s


def sample_stride(n: int, size: int = _SAMPLE) -> int | None:
    """The stride of the bracketing sample (about ``size`` entries) of a row of n entries,
    or None (select directly). A prime: a stride that divides an image axis (128 in a
    128^3 volume) would sample one plane of the image only."""
    stride = n // size
    return _prime_at_most(stride) if stride >= 4 else None


def bracket_from_sample(sample: Tensor, n: int, k: int) -> tuple[Tensor | None, Tensor | None]:
    """Guesses ``lo <= k-th largest <= hi`` of a row of n entries from its strided
    ``sample`` (None: no useful bound on that side)."""
    m = sample.numel()
    # ascending rank of the k-th largest, scaled to the sample, +- 6 standard deviations
    frac = (n - k) / n
    margin = 6.0 * math.sqrt(m * max(frac * (1.0 - frac), 1.0 / m)) + 8.0
    lo_pos, hi_pos = math.floor(frac * m - margin), math.ceil(frac * m + margin)
    if lo_pos >= 0 and hi_pos < m and sample.device.type == "cpu" and sample.dtype in _NUMPY:
        # the second introselect only runs on the part above lo (numpy's own two-kth
        # partition is several times slower than two single ones)
        first = np.partition(sample.detach().numpy(), lo_pos)
        j = hi_pos - lo_pos - 1
        hi = np.partition(first[lo_pos + 1 :], j)[j]
        return torch.tensor(first[lo_pos]), torch.tensor(hi)
    lo = _kth_smallest(sample, lo_pos + 1) if lo_pos >= 0 else None
    hi = _kth_smallest(sample, hi_pos + 1) if hi_pos < m else None
    return lo, hi


def _bracket(values: Tensor, k: int) -> tuple[Tensor | None, Tensor | None]:
    """Sample-based guesses ``lo <= k-th largest <= hi`` (None: no useful bound)."""
    stride = sample_stride(values.numel())
    if stride is None:
        return None, None
    return bracket_from_sample(values[::stride], values.numel(), k)


def top_k_indices(values: Tensor, k: int, *, bracket: bool = True) -> Tensor:
    """Ascending indices of exactly the k largest entries of a 1-D tensor (ties: lowest index).

    Entries that must never be chosen should be ``-inf`` (k at most the number of finite
    entries). NaN entries count as the largest, as in ``torch.topk``. ``bracket=False``:
    one quickselect over all entries (for values already narrowed to a band).
    """
    n = values.numel()
    if k >= n:
        return torch.arange(n, device=values.device)
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=values.device)
    if bool(torch.isnan(values.sum())):
        # NaN logits are not repaired (METHODS §0): select like torch.topk, NaN first
        return torch.topk(values, k, sorted=False).indices.sort().values
    lo, hi = _bracket(values, k) if bracket else (None, None)
    idx = _flat_true(values >= lo) if lo is not None else None
    if idx is None or idx.numel() < k:
        idx, hi = torch.arange(n, device=values.device), None
    cand = values[idx]
    threshold = None
    if hi is not None:
        # the candidates above hi are all chosen: the k-th value is found in the band
        # [lo, hi] alone, one single-threaded quickselect over a few % of the candidates
        above = cand > hi
        n_above = int(torch.count_nonzero(above))
        if n_above < k:
            band = cand[_flat_true(~above)]
            threshold = _kth_smallest(band, band.numel() - (k - n_above) + 1)
    if threshold is None:  # no upper bound, or the sample misjudged it
        threshold = _kth_smallest(cand, cand.numel() - k + 1)
    chosen = idx[_flat_true(cand >= threshold)]
    if chosen.numel() == k:
        return chosen
    # ties at the threshold: everything above it, then the first equal ones by index
    above = cand > threshold
    equal = cand == threshold
    need = k - int(torch.count_nonzero(above))
    return idx[above | (equal & (torch.cumsum(equal, 0) <= need))]


def top_k_row_mask(values: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly the k largest entries of a 1-D tensor (ties: lowest index)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    mask[top_k_indices(values, k)] = True
    return mask


def top_k_mask(values: Tensor, counts: list[int]) -> Tensor:
    """Row-wise top-k masks of a ``(R, n)`` tensor, ``counts[r]`` entries in row r (0: none)."""
    return torch.stack([top_k_row_mask(values[r], c) for r, c in enumerate(counts)])
