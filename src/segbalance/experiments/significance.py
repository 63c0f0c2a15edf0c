"""The paired tests behind :mod:`segbalance.experiments.stats` (METHODS §11).

Two-sided Wilcoxon signed-rank of paired samples (scipy defaults), Holm's step-down
adjustment, and percentile bootstrap CIs of the mean (plain or hierarchical over cases and
seeds) with ``numpy.random.default_rng(seed)``, and the exact McNemar test of paired
binary outcomes (lesion detected or not). Torch-free. Also importable from
``segbalance.experiments.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired samples ``a`` and ``b`` (each ``(n,)``).

    ``d = a - b``; pairs where either is NaN are dropped (counted in ``n_dropped_nan``), then
    zero differences are dropped (``scipy.stats.wilcoxon`` defaults: ``zero_method="wilcox"``,
    ``method="auto"``: exact null distribution for n <= 50 without ties or zeros; with them
    an exhaustive sign-flip permutation test for n <= 13, else the normal approximation).

    Returns:
        ``{"n"`` (non-zero pairs used by the test), ``"n_pairs"`` (finite pairs),
        ``"n_zero"``, ``"n_dropped_nan"``, ``"statistic"`` (scipy's two-sided W =
        min(W+, W-)), ``"w_plus"``, ``"w_minus"``, ``"p"``, ``"median_diff"``,
        ``"mean_diff"`` (over finite pairs), ``"rank_biserial"`` (r = (W+ - W-) / (W+ + W-),
        in [-1, 1], positive when ``a`` tends to exceed ``b``), ``"reason"``}. With
        ``n < 1`` (nothing left after dropping) p, W and r are NaN and ``reason`` says why;
        otherwise ``reason`` is None.
    """
    from scipy import stats as scipy_stats

    a_arr = np.asarray(a, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"Expected paired samples of equal length but got {a_arr.size} and {b_arr.size}"
        )
    d = a_arr - b_arr
    finite = np.isfinite(d)
    d = d[finite]
    nonzero = d[d != 0]
    result: dict[str, Any] = {
        "n": int(nonzero.size),
        "n_pairs": int(d.size),
        "n_zero": int(d.size - nonzero.size),
        "n_dropped_nan": int(finite.size - d.size),
        "median_diff": float(np.median(d)) if d.size else math.nan,
        "mean_diff": float(np.mean(d)) if d.size else math.nan,
    }
    if nonzero.size < 1:
        reason = "no finite pairs" if d.size == 0 else "all paired differences are zero"
        nan = math.nan
        result.update(statistic=nan, w_plus=nan, w_minus=nan, p=nan, rank_biserial=nan)
        result["reason"] = reason
        return result
    ranks = scipy_stats.rankdata(np.abs(nonzero))  # average ranks for tied |d|
    w_plus = float(ranks[nonzero > 0].sum())
    w_minus = float(ranks[nonzero < 0].sum())
    # scipy drops the zeros itself (zero_method='wilcox'); pass d unchanged so its
    # defaults decide everything (exact vs normal approximation included).
    test = scipy_stats.wilcoxon(d)
    result.update(
        statistic=float(test.statistic),
        w_plus=w_plus,
        w_minus=w_minus,
        p=float(test.pvalue),
        rank_biserial=(w_plus - w_minus) / (w_plus + w_minus),
        reason=None,
    )
    return result


def bootstrap_ci(
    d: Sequence[float] | np.ndarray,
    B: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    hierarchical: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d``.

    Args:
        d: ``(n_cases,)`` values (paired differences or scores), or with
            ``hierarchical=True`` ``(n_cases, n_seeds)``. NaN cases are dropped first
            (hierarchical: a case with any NaN seed is dropped).
        B: number of resamples.
        seed: ``numpy.random.default_rng(seed)``.
        level: coverage, in (0, 1).
        hierarchical: resample cases with replacement, then seeds with replacement within
            every drawn case, and take the grand mean.

    Resampling: the case indices of all resamples are drawn at once as
    ``rng.integers(0, n, (B, n))`` (hierarchical: then ``rng.integers(0, S, (B, n, S))``);
    the interval is ``numpy.percentile`` (linear interpolation) at ``(1 - level) / 2`` and
    ``(1 + level) / 2``. This reproduces METHODS §11's example: (0.00875, 0.04125), printed
    there rounded half-up as [0.0088, 0.0413].

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` when no case is left.
    """
    if isinstance(B, bool) or not isinstance(B, int | np.integer) or B < 1:
        raise ValueError(f"Expected B to be an integer >= 1 but got {B!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"Expected level in (0, 1) but got {level!r}")
    values = np.asarray(d, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if hierarchical:
        if values.ndim != 2:
            raise ValueError(
                f"Expected d of shape (n_cases, n_seeds) with hierarchical=True "
                f"but got shape {values.shape}"
            )
        values = values[np.all(np.isfinite(values), axis=1)]
        n, n_seeds = values.shape
        if n == 0 or n_seeds == 0:
            return (math.nan, math.nan)
        cases = rng.integers(0, n, (B, n))
        seeds = rng.integers(0, n_seeds, (B, n, n_seeds))
        means = values[cases[:, :, None], seeds].mean(axis=(1, 2))
    else:
        if values.ndim != 1:
            raise ValueError(f"Expected d of shape (n_cases,) but got shape {values.shape}")
        values = values[np.isfinite(values)]
        n = values.size
        if n == 0:
            return (math.nan, math.nan)
        means = values[rng.integers(0, n, (B, n))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    Sorted ascending ``p_(1) <= ... <= p_(m)``: ``p~_(k) = max_{j<=k} min(1, (m - j + 1) p_(j))``
    (monotone, capped at 1). NaN entries stay NaN and do not count in ``m``.
    Example: (0.01, 0.04, 0.03) -> (0.03, 0.06, 0.06).
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    adjusted = np.full(p.shape, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError(f"Expected p-values in [0, 1] but got {list(pvalues)}")
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for k, index in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p for paired binary outcomes (e.g. a lesion detected or not
    by methods A and B): only the discordant pairs count, and under H0 each is A-only with
    probability 1/2, so ``p = min(1, 2 * P[Binom(n, 1/2) <= min(only_a, only_b)])`` with
    ``n = only_a + only_b`` (1.0 when ``n = 0``). Example: (8, 1) -> 0.0391.
    """
    if min(only_a, only_b) < 0 or int(only_a) != only_a or int(only_b) != only_b:
        raise ValueError(f"Expected two counts >= 0 but got {only_a}, {only_b}")
    n, low = int(only_a + only_b), int(min(only_a, only_b))
    if n == 0:
        return 1.0
    # exact integer arithmetic: math.comb sums stay exact for any lesion count
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2**n
    return min(1.0, 2.0 * tail)
