"""Statistics shared by several layers: connected components, skewness/kurtosis, CALF branch.

This is the one bottom module that losses/, data/ and evaluate/ import (DESIGN.md
"Layering"); it depends on numpy, scipy-free maths and cc3d only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

CalfBranch = Literal["fisher", "logit", "arcsine", "log10_bce", "ln_bce", "bce_dice"]
CALF_BRANCHES: tuple[str, ...] = ("fisher", "logit", "arcsine", "log10_bce", "ln_bce", "bce_dice")


def label_components(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label connected foreground components of a 2D or 3D boolean mask.

    Args:
        mask: boolean/integer array ``(*S)``, S 2D or 3D; non-zero is foreground.
        connectivity: 26/18/6 in 3D, 8/4 in 2D; default full (26 or 8).

    Returns:
        ``(labels, n)``: unsigned integer array ``(*S)`` (cc3d picks the narrowest dtype)
        with 0 background and 1..n components.
    """
    import cc3d

    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise ValueError(f"Expected a 2D or 3D mask but got shape {tuple(mask.shape)}")
    if connectivity is None:
        connectivity = 26 if mask.ndim == 3 else 8
    # a bool mask goes in as its zero-copy uint8 view (a cast would cost a third of cc3d's time)
    binary = np.ascontiguousarray(mask if mask.dtype == bool else mask != 0).view(np.uint8)
    labels, n = cc3d.connected_components(binary, connectivity=connectivity, return_N=True)
    return labels, int(n)


def component_sizes(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Voxel count of each component 1..n of a label map (index 0 = background)."""
    flat = np.asarray(labels).ravel()
    # lesions are a small share of voxels: count only them; the rest is background
    foreground = flat[flat != 0].astype(np.intp, copy=False)
    sizes = np.bincount(foreground, minlength=max(1, 0 if n is None else n + 1))
    sizes[0] = flat.size - foreground.size
    return sizes


def _standardised_moment(values: Sequence[float] | np.ndarray, order: int) -> float:
    """Biased central moment m_order / m2^(order/2); NaN if empty or zero variance (scipy rule)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return math.nan
    d = x - x.mean()
    m2 = float(np.mean(d**2))
    if _is_zero_variance(m2, float(x.mean())):
        return math.nan
    return float(np.mean(d**order)) / m2 ** (order / 2)


def skewness(values: Sequence[float] | np.ndarray) -> float:
    """Biased (population) skewness, as ``scipy.stats.skew(bias=True)``; NaN if degenerate."""
    return _standardised_moment(values, 3)


def excess_kurtosis(values: Sequence[float] | np.ndarray) -> float:
    """Biased excess (Fisher) kurtosis, as ``scipy.stats.kurtosis(bias=True)``; NaN if degenerate."""
    return _standardised_moment(values, 4) - 3.0


def _is_zero_variance(m2: float, mean: float) -> bool:
    # scipy's rule: variance within rounding of the mean counts as zero (result NaN)
    return m2 == 0.0 or m2 <= (np.finfo(np.float64).resolution * 10 * mean) ** 2


def calf_branch(s: float, k: float) -> tuple[str, str]:
    """CALF decision table (METHODS §7, exact branch order of the authors' code).

    Args:
        s: skewness of the foreground amounts; k: their excess kurtosis.

    Returns:
        ``(branch, path)``: a name from :data:`CALF_BRANCHES` and the decision in words.
    """
    # NaN fails every comparison and lands in the last branch, as in the reference code.
    if s <= -1:
        return "fisher", f"S={s:.4f} <= -1 -> fisher"
    if -1 < s <= -0.5:
        return "logit", f"-1 < S={s:.4f} <= -0.5 -> logit"
    if -0.5 < s < 0:
        return "arcsine", f"-0.5 < S={s:.4f} < 0 -> arcsine"
    if s >= 1:
        return "log10_bce", f"S={s:.4f} >= 1 -> log10_bce"
    if 0.5 <= s < 1:
        return "ln_bce", f"0.5 <= S={s:.4f} < 1 -> ln_bce"
    if 0 < s < 0.5 and k < 0:
        return "log10_bce", f"0 < S={s:.4f} < 0.5 and K={k:.4f} < 0 -> log10_bce"
    return "bce_dice", f"S={s:.4f}, K={k:.4f}: no other rule applies -> bce_dice"


def calf_select(fractions: Sequence[float] | np.ndarray, *, warn: bool = True) -> dict:
    """Dataset-level CALF selection from per-case foreground fractions (METHODS §7, default mode).

    Args:
        fractions: one foreground fraction per case, in [0, 1] (empty cases included).

    Returns:
        ``{"branch", "path", "skewness", "excess_kurtosis", "n_cases"}``. Fewer than 3
        cases or zero variance gives ``bce_dice`` with a warning.
    """
    f = np.asarray(fractions, dtype=np.float64).ravel()
    if f.size and (not np.all(np.isfinite(f)) or f.min() < 0 or f.max() > 1):
        raise ValueError(f"Expected foreground fractions in [0, 1] but got {f.tolist()[:8]}")
    s, k = skewness(f), excess_kurtosis(f)
    if f.size < 3 or math.isnan(s):
        reason = f"{f.size} case(s)" if f.size < 3 else "zero variance"
        if warn:
            warnings.warn(f"CALF statistic is degenerate ({reason}); using bce_dice", stacklevel=2)
        return {
            "branch": "bce_dice",
            "path": f"degenerate statistic ({reason}) -> bce_dice",
            "skewness": s,
            "excess_kurtosis": k,
            "n_cases": int(f.size),
        }
    branch, path = calf_branch(s, k)
    return {
        "branch": branch,
        "path": path,
        "skewness": s,
        "excess_kurtosis": k,
        "n_cases": int(f.size),
    }


# Inverse lesion-volume weighting bounds from neuro-ml/inverse_weighting (METHODS §3).
IW_MIN_WEIGHT = 1.0
IW_MAX_WEIGHT = 2e5


def inverse_weights_from_components(
    components: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Inverse lesion-volume weights of one patch from its component map (METHODS §3).

    ``w = clip(N / ((K + 1) |cc(x)|), 1, 2e5)``: N = valid voxels of the patch, K = number of
    non-zero component ids present, background counted as one component, ignored voxels 0.
    The component map may come from labelling the full volume (a lesion cut by the patch
    border keeps its global id, as in the reference code).

    Args:
        components: integer array ``(*S)``, 0 = background, >0 = lesion id.
        valid: optional boolean array ``(*S)``; False marks ignored voxels.

    Returns:
        float32 array ``(*S)``.
    """
    comp = np.asarray(components)
    # lesions are a small share of voxels: count and index only them (the bulk is background)
    if valid is None:
        lesion = comp != 0
        n_total = comp.size
    else:
        valid = np.asarray(valid, dtype=bool)
        lesion = (comp != 0) & valid
        n_total = int(np.count_nonzero(valid))
    ids = comp[lesion].astype(np.intp, copy=False)
    sizes = np.bincount(ids, minlength=1)
    sizes[0] = n_total - ids.size  # background (valid voxels only) is one component
    k = int(np.count_nonzero(sizes[1:]))
    with np.errstate(divide="ignore"):
        per_component = n_total / ((k + 1) * sizes.astype(np.float64))
    per_component = np.clip(per_component, IW_MIN_WEIGHT, IW_MAX_WEIGHT).astype(np.float32)
    weights = np.full(comp.shape, per_component[0], dtype=np.float32)
    weights[lesion] = per_component[ids]
    if valid is not None:
        weights[~valid] = 0.0
    return weights
