"""Independent float64 numpy references for every loss of METHODS.md §0-§7.

Written from the specification only (never from segbalance code). Shapes follow
METHODS §0: logits ``z`` (B, C, *S), integer targets ``t`` (B, *S), voxel weights
``w`` (B, *S) or None. Each reference returns a Python float.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

LN10 = math.log(10.0)
CALF_EPS = 1e-7
CALF_L = math.log((1 - CALF_EPS) / CALF_EPS)  # clamp on z equivalent to clipping p at 1e-7


# ----------------------------------------------------------------------------- basics
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax over axis 1 of (B, C, *S)."""
    zmax = z.max(axis=1, keepdims=True)
    return z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))


def bce_logits(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-voxel BCE with logits, the stable form of METHODS §0."""
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def valid_mask(t: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """m = [t != ignore] as float (B, *S)."""
    if ignore_index is None:
        return np.ones(t.shape)
    return (t != ignore_index).astype(np.float64)


def clean_labels(t: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """Ignored voxels mapped to class 0 (METHODS §0)."""
    if ignore_index is None:
        return t.astype(np.int64)
    return np.where(t == ignore_index, 0, t).astype(np.int64)


def one_hot(t: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, *S) -> (B, C, *S) float one-hot."""
    return np.stack([(t == c) for c in range(n_classes)], axis=1).astype(np.float64)


def probs_and_onehot(z: np.ndarray, t: np.ndarray, ignore_index: int | None):
    """(p, y, m) with p, y (B, C, *S): C=1 sigmoid channel, C>=2 softmax and one-hot."""
    tc = clean_labels(t, ignore_index)
    m = valid_mask(t, ignore_index)
    if z.shape[1] == 1:
        return sigmoid(z), tc[:, None].astype(np.float64), m
    return np.exp(log_softmax(z)), one_hot(tc, z.shape[1]), m


def voxel_ce(z: np.ndarray, t: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """Per-voxel CE (B, *S): BCE for C=1, softmax CE for C>=2 (ignored voxels as class 0)."""
    tc = clean_labels(t, ignore_index)
    if z.shape[1] == 1:
        return bce_logits(z[:, 0], tc.astype(np.float64))
    ls = log_softmax(z)
    return -np.take_along_axis(ls, tc[:, None], axis=1)[:, 0]


def _w(w: np.ndarray | None, t: np.ndarray) -> np.ndarray:
    return np.ones(t.shape) if w is None else np.asarray(w, dtype=np.float64).reshape(t.shape)


def _sum_axes(ndim: int, batch: bool) -> tuple[int, ...]:
    """Axes of (B, C, *S) to sum before a ratio: spatial, plus batch when batch=True."""
    spatial = tuple(range(2, ndim))
    return (0, *spatial) if batch else spatial


def _channels(c_total: int, include_background: bool) -> slice:
    if c_total == 1 or include_background:
        return slice(0, c_total)
    return slice(1, c_total)


# ----------------------------------------------------------------------------- voxel-wise
def ce(
    z,
    t,
    *,
    ignore_index=None,
    weight=None,
    class_weights=None,
    pos_weight=None,
    adaptive_pos_weight=False,
) -> float:
    """§1.1: mean over non-ignored voxels of m w l; class weights -> weighted mean."""
    m, w = valid_mask(t, ignore_index), _w(weight, t)
    tc = clean_labels(t, ignore_index)
    if adaptive_pos_weight:
        y = tc.astype(np.float64)
        zz = z[:, 0]
        s = sigmoid(zz).sum()
        beta = (zz.size - s) / max(s, 1.0)
        ell = beta * y * bce_logits(zz, np.ones_like(zz)) + (1 - y) * bce_logits(
            zz, np.zeros_like(zz)
        )
        return float((m * w * ell).sum() / m.sum())
    if pos_weight is not None:
        y = tc.astype(np.float64)
        zz = z[:, 0]
        ell = pos_weight * y * bce_logits(zz, np.ones_like(zz)) + (1 - y) * bce_logits(
            zz, np.zeros_like(zz)
        )
        return float((m * w * ell).sum() / m.sum())
    ell = voxel_ce(z, t, ignore_index)
    if class_weights is not None:
        cw = np.asarray(class_weights, dtype=np.float64)[tc]
        return float((m * cw * ell).sum() / (m * cw).sum())
    return float((m * w * ell).sum() / m.sum())


def balanced_ce(z, t, *, ignore_index=None) -> float:
    """§1.2: per sample, mean over present classes of the per-class mean CE."""
    ell = voxel_ce(z, t, ignore_index)
    m, tc = valid_mask(t, ignore_index), clean_labels(t, ignore_index)
    n_cls = max(2, z.shape[1])
    out = []
    for b in range(z.shape[0]):
        counts = np.array([((tc[b] == c) * m[b]).sum() for c in range(n_cls)])
        present = counts > 0
        wc = np.zeros(n_cls)
        wc[present] = m[b].sum() / (present.sum() * counts[present])
        wx = wc[tc[b]] * m[b]
        out.append((wx * ell[b]).sum() / wx.sum())
    return float(np.mean(out))


def focal(z, t, *, gamma=2.0, alpha=None, ignore_index=None, weight=None) -> float:
    """§1.6: alpha_t (1 - p_t)^gamma (-log p_t), voxel mean (§0)."""
    m, w, tc = valid_mask(t, ignore_index), _w(weight, t), clean_labels(t, ignore_index)
    if z.shape[1] == 1:
        y = tc.astype(np.float64)
        zz = z[:, 0]
        ell = bce_logits(zz, y)
        pt = np.where(y == 1, sigmoid(zz), 1 - sigmoid(zz))
        at = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    else:
        logpt = np.take_along_axis(log_softmax(z), tc[:, None], axis=1)[:, 0]
        pt, ell = np.exp(logpt), -logpt
        if alpha is None:
            at = 1.0
        elif np.ndim(alpha) == 0:
            at = np.where(tc == 0, 1 - alpha, alpha)
        else:
            at = np.asarray(alpha, dtype=np.float64)[tc]
    ell = at * (1 - pt) ** gamma * ell
    return float((m * w * ell).sum() / m.sum())


def topk_ce(z, t, *, k=10.0, per_sample=False, ignore_index=None, weight=None) -> float:
    """§1.7: mean of the k largest per-voxel CE (pool = batch, or per sample then mean)."""
    ell = voxel_ce(z, t, ignore_index) * _w(weight, t)
    m = valid_mask(t, ignore_index) > 0

    def pool_mean(values: np.ndarray) -> float:
        kk = max(1, math.floor(k * values.size / 100))
        return float(np.sort(values)[::-1][:kk].mean())

    if per_sample:
        return float(np.mean([pool_mean(ell[b][m[b]]) for b in range(z.shape[0])]))
    return pool_mean(ell[m])


def la_ce(z, t, *, prior, tau=1.0, ignore_index=None, weight=None) -> float:
    """§2: CE on logits shifted by tau log prior (binary: tau log(pi / (1 - pi)))."""
    if z.shape[1] == 1:
        zz = z + tau * math.log(prior / (1 - prior))
    else:
        zz = z + tau * np.log(np.asarray(prior, dtype=np.float64)).reshape(
            1, -1, *([1] * (z.ndim - 2))
        )
    return ce(zz, t, ignore_index=ignore_index, weight=weight)


# ----------------------------------------------------------------------------- region losses
def dice(
    z,
    t,
    *,
    include_background=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    batch=False,
    squared_pred=False,
    ignore_index=None,
    weight=None,
) -> float:
    """§1.3: 1 - mean over (b, c) of (2 sum wmpy + s) / (sum wm p^q + sum wm y + s)."""
    p, y, m = probs_and_onehot(z, t, ignore_index)
    wm = (_w(weight, t) * m)[:, None]
    sl = _channels(z.shape[1], include_background)
    p, y = p[:, sl], y[:, sl]
    ax = _sum_axes(z.ndim, batch)
    num = 2 * (wm * p * y).sum(ax) + smooth_nr
    den = (wm * p ** (2 if squared_pred else 1)).sum(ax) + (wm * y).sum(ax) + smooth_dr
    return float(1 - np.mean(num / den))


def generalized_dice(
    z,
    t,
    *,
    include_background=True,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    batch=False,
    w_type="square",
    ignore_index=None,
    weight=None,
) -> float:
    """§1.4: Sudre GDL (MONAI semantics); C=1 uses channels [1-p, p]; w_type 'iw' = 1/(1+G^2)."""
    p, y, m = probs_and_onehot(z, t, ignore_index)
    if z.shape[1] == 1:
        p, y = np.concatenate([1 - p, p], axis=1), np.concatenate([1 - y, y], axis=1)
    elif not include_background:
        p, y = p[:, 1:], y[:, 1:]
    wm = (_w(weight, t) * m)[:, None]
    ax = _sum_axes(z.ndim, batch)
    inter, g = (wm * p * y).sum(ax), (wm * y).sum(ax)
    if w_type == "iw":
        omega = 1.0 / (1.0 + g**2)
        den_c = (wm * (p**2 + y**2)).sum(ax)
    else:
        den_c = (wm * p).sum(ax) + g
        with np.errstate(divide="ignore"):
            omega = 1.0 / g**2
        omega = np.atleast_2d(omega) if not batch else omega
        finite = np.isfinite(omega)
        # infinite weights -> max finite weight of the same sample (or of the batch sums)
        if batch:
            omega = np.where(finite, omega, omega[finite].max() if finite.any() else 0.0)
        else:
            for b in range(omega.shape[0]):
                fill = omega[b][finite[b]].max() if finite[b].any() else 0.0
                omega[b] = np.where(finite[b], omega[b], fill)
    num = 2 * (omega * inter).sum(-1) + smooth_nr
    den = (omega * den_c).sum(-1) + smooth_dr
    return float(np.mean(1 - num / den))


def tversky(
    z,
    t,
    *,
    alpha=0.3,
    beta=0.7,
    include_background=False,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    batch=False,
    ignore_index=None,
    weight=None,
) -> float:
    """§1.5: 1 - mean (TP + s) / (TP + alpha FP + beta FN + s)."""
    p, y, m = probs_and_onehot(z, t, ignore_index)
    wm = (_w(weight, t) * m)[:, None]
    sl = _channels(z.shape[1], include_background)
    p, y = p[:, sl], y[:, sl]
    ax = _sum_axes(z.ndim, batch)
    tp = (wm * p * y).sum(ax)
    fp = (wm * p * (1 - y)).sum(ax)
    fn = (wm * (1 - p) * y).sum(ax)
    return float(1 - np.mean((tp + smooth_nr) / (tp + alpha * fp + beta * fn + smooth_dr)))


def asym(
    z,
    t,
    *,
    beta=1.5,
    squared=True,
    include_background=False,
    smooth_nr=0.0,
    smooth_dr=1e-8,
    batch=False,
    ignore_index=None,
    weight=None,
) -> float:
    """§3: F_beta = (1 + b^2) sum wpy / sum w (b^2 y^2 + p^q)."""
    p, y, m = probs_and_onehot(z, t, ignore_index)
    wm = (_w(weight, t) * m)[:, None]
    sl = _channels(z.shape[1], include_background)
    p, y = p[:, sl], y[:, sl]
    ax = _sum_axes(z.ndim, batch)
    q = 2 if squared else 1
    num = (1 + beta**2) * (wm * p * y).sum(ax) + smooth_nr
    den = (wm * (beta**2 * y**q + p**q)).sum(ax) + smooth_dr
    return float(1 - np.mean(num / den))


def pm_dice(
    z,
    t,
    *,
    gamma=2.0,
    squared=True,
    include_background=True,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    batch=False,
    ignore_index=None,
    weight=None,
) -> float:
    """§5: m = |y - p|^gamma (detached) multiplies every sum of a (squared) Dice."""
    p, y, msk = probs_and_onehot(z, t, ignore_index)
    sl = _channels(z.shape[1], include_background)
    p, y = p[:, sl], y[:, sl]
    mod = np.abs(y - p) ** gamma * (_w(weight, t) * msk)[:, None]
    ax = _sum_axes(z.ndim, batch)
    q = 2 if squared else 1
    num = 2 * (mod * y * p).sum(ax) + smooth_nr
    den = (mod * (y**q + p**q)).sum(ax) + smooth_dr
    return float(1 - np.mean(num / den))


def topk_dice(
    z,
    t,
    *,
    k=10.0,
    selection="shared",
    include_background=True,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    batch=False,
    ignore_index=None,
) -> float:
    """§4: squared Dice restricted, per sample, to the k% voxels with the largest CE."""
    p, y, m = probs_and_onehot(z, t, ignore_index)
    n_b, n_c = z.shape[:2]
    sel = np.zeros(p.shape)
    if selection == "shared":
        ell = voxel_ce(z, t, ignore_index)
        for b in range(n_b):
            valid = m[b].ravel() > 0
            kk = max(1, math.floor(k * valid.sum() / 100))
            score = np.where(valid, ell[b].ravel(), -np.inf)
            flat = np.zeros(valid.size)
            flat[np.argsort(-score, kind="stable")[:kk]] = 1
            sel[b] = flat.reshape(m[b].shape)[None]
    else:
        # per-class BCE of p_c vs y_c orders voxels exactly as |y_c - p_c| does
        for b in range(n_b):
            valid = m[b].ravel() > 0
            kk = max(1, math.floor(k * valid.sum() / 100))
            for c in range(n_c):
                score = np.where(valid, np.abs(y[b, c] - p[b, c]).ravel(), -np.inf)
                flat = np.zeros(valid.size)
                flat[np.argsort(-score, kind="stable")[:kk]] = 1
                sel[b, c] = flat.reshape(m[b].shape)
    sl = _channels(n_c, include_background)
    p, y, sel = p[:, sl], y[:, sl], sel[:, sl]
    ax = _sum_axes(z.ndim, batch)
    num = 2 * (sel * p * y).sum(ax) + smooth_nr
    den = (sel * (p**2 + y**2)).sum(ax) + smooth_dr
    return float(1 - np.mean(num / den))


# ----------------------------------------------------------------------------- DBCE
def ball(radius: float, ndim: int, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Euclidean ball {||u * spacing|| <= radius} as a boolean structuring element."""
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    half = [math.floor(radius / s + 1e-9) for s in sp]
    grids = np.meshgrid(
        *[np.arange(-h, h + 1) * s for h, s in zip(half, sp, strict=True)], indexing="ij"
    )
    return sum(g**2 for g in grids) <= radius**2 + 1e-9


def dbce_voxel_weights(
    t_b: np.ndarray, m_b: np.ndarray, n_classes: int, structure: np.ndarray
) -> np.ndarray:
    """§6 steps 1-3 for one sample: region weights N / (R+ |r|) per voxel."""
    labels = [c for c in range(1, max(2, n_classes)) if ((t_b == c) & (m_b > 0)).any()]
    dil = {c: ndimage.binary_dilation((t_b == c) & (m_b > 0), structure=structure) for c in labels}
    region = np.zeros(t_b.shape, dtype=np.int64)
    by_size = sorted(labels, key=lambda c: dil[c].sum())
    for idx in np.ndindex(t_b.shape):
        covering = [c for c in labels if dil[c][idx]]
        if not covering:
            continue
        own = int(t_b[idx])
        region[idx] = own if own in covering else next(c for c in by_size if c in covering)
    sizes = {r: ((region == r) & (m_b > 0)).sum() for r in np.unique(region)}
    sizes = {r: s for r, s in sizes.items() if s > 0}
    n_valid = m_b.sum()
    w = np.zeros(t_b.shape)
    for r, s in sizes.items():
        w[region == r] = n_valid / (len(sizes) * s)
    return w * m_b


def dbce(z, t, *, radius=3.0, spacing=None, radius_mm=None, ignore_index=None) -> float:
    """§6: CE weighted by dilated-region weights, weighted mean per sample, mean over batch."""
    ell = voxel_ce(z, t, ignore_index)
    m, tc = valid_mask(t, ignore_index), clean_labels(t, ignore_index)
    nd = z.ndim - 2
    structure = ball(radius_mm, nd, spacing) if radius_mm is not None else ball(radius, nd)
    out = []
    for b in range(z.shape[0]):
        w = dbce_voxel_weights(tc[b], m[b], z.shape[1], structure)
        out.append((w * ell[b]).sum() / w.sum())
    return float(np.mean(out))


# ----------------------------------------------------------------------------- CALF
def calf_binary_terms(z: np.ndarray, y: np.ndarray, branch: str, faithful: bool) -> float:
    """§7 per-voxel branch term, mean over all elements (C=1, the transform branches)."""
    if faithful:
        p = np.clip(sigmoid(z), CALF_EPS, 1 - CALF_EPS)
    else:
        p = sigmoid(np.clip(z, -CALF_L, CALF_L))
    if branch == "fisher":
        v = -(y * np.arctanh(p) + (1 - y) * np.arctanh(1 - p))
        off = np.arctanh(1 - CALF_EPS)
    elif branch == "logit":
        v = -(2 * y - 1) * np.log(p / (1 - p))
        off = CALF_L
    elif branch == "arcsine":
        v = -(y * np.arcsin(np.sqrt(p)) + (1 - y) * np.arcsin(np.sqrt(1 - p)))
        off = np.arcsin(np.sqrt(1 - CALF_EPS))
    else:
        raise ValueError(branch)
    return float(v.mean() + (0.0 if faithful else off))


def calf(z, t, *, branch: str, faithful: bool = False) -> float:
    """§7, binary: the forced branch's loss (offsets in dataset mode, none when faithful)."""
    y = t.reshape(z[:, 0].shape).astype(np.float64)
    zz = z[:, 0]
    if branch in ("fisher", "logit", "arcsine"):
        return calf_binary_terms(zz, y, branch, faithful)
    if faithful:
        p = np.clip(sigmoid(zz), CALF_EPS, 1 - CALF_EPS)
        bce = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    else:
        bce = float(bce_logits(zz, y).mean())
    if branch == "log10_bce":
        return bce / LN10
    if branch == "ln_bce":
        return bce
    if branch == "bce_dice":
        if faithful:
            p = sigmoid(zz)
            d = (2 * (p * y).sum() + CALF_EPS) / (p.sum() + y.sum() + CALF_EPS)
            return bce + 1 - float(d)
        return bce + dice(z, t.reshape(zz.shape))
    raise ValueError(branch)


# ----------------------------------------------------------------------------- weighting
def inverse_lesion_weights(labels: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """§3 for one case (2D or 3D): clip(N / ((K + 1) |cc(x)|), 1, 2e5), 0 on ignored."""
    labels = np.asarray(labels)
    valid = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    fg = (labels != 0) & valid
    structure = np.ones((3,) * labels.ndim, dtype=bool)  # 26 (3D) / 8 (2D) connectivity
    comp, k = ndimage.label(fg, structure=structure)
    sizes = np.bincount(comp.ravel(), minlength=k + 1).astype(np.float64)
    w = np.clip(labels.size / ((k + 1) * sizes[comp]), 1.0, 2e5)
    return np.where(valid, w, 0.0)
