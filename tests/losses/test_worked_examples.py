"""Every worked number of METHODS.md §1-§7, to the printed 4 decimals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import build_loss, inverse_lesion_weights

from .conftest import E_LOGITS, E_TARGET, tl, tt

ATOL = 5e-5  # METHODS prints 4 d.p.


def on_e(name: str, **options) -> float:
    return float(build_loss(name, **options)(tt(E_LOGITS), tl(E_TARGET)))


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("ce", {}, 0.4948),
        ("ce", {"adaptive_pos_weight": True}, 0.5274),
        ("balanced_ce", {}, 0.4821),
        ("dice", {}, 0.3961),
        ("dice", {"squared_pred": True}, 0.2459),
        ("generalized_dice", {}, 0.3571),
        ("generalized_dice", {"w_type": "iw"}, 0.2152),
        ("tversky", {}, 0.3721),
        ("focal", {}, 0.1840),
        ("focal", {"alpha": 0.75}, 0.0612),
        ("topk_ce", {"k": 25}, 1.1973),
        ("topk_ce", {"k": 10}, 1.7014),
        ("topk_ce", {}, 1.7014),  # default K = 10
        ("la_ce", {"prior": 0.002}, 2.0211),
        ("balanced", {"prior": 0.002}, 2.4172),
        ("la_ce+dice", {"prior": 0.002}, 2.4172),
        ("topk_dice", {"k": 25}, 0.4787),
        ("topk_dice", {"k": 10}, 1.0000),
        ("ce+topk_dice", {"k": 25}, 0.9735),
        ("pm_dice", {}, 0.5511),  # default gamma 2
        ("pm_dice", {"gamma": 1.0}, 0.4047),
        ("pm_dice", {"gamma": 0.0}, 0.2459),
        ("dbce", {"radius": 1}, 0.4948),  # dilation covers the patch -> plain CE (§6)
        ("dbce", {"radius": 0}, 0.4821),  # R = 0 -> balanced CE
    ],
)
def test_example_e(name: str, options: dict, expected: float) -> None:
    assert on_e(name, **options) == pytest.approx(expected, abs=ATOL)


def test_example_e_la_ce_per_voxel() -> None:
    """§2: per-voxel LA-BCE of E with prior 0.002 via one-voxel batches."""
    per_voxel = [4.2273, 0.0007, 5.7159, 0.0001, 0.0089, 0.0012, 0.0003, 6.2146]
    loss = build_loss("la_ce", prior=0.002)
    z, t = E_LOGITS.reshape(8), E_TARGET.reshape(8)
    got = [float(loss(tt(z[i].reshape(1, 1, 1, 1)), tl(t[i].reshape(1, 1, 1)))) for i in range(8)]
    np.testing.assert_allclose(got, per_voxel, atol=ATOL)


def test_multiclass_la_ce_one_voxel() -> None:
    """§2: z = (1, 0.5, -0.5), prior (0.95, 0.04, 0.01), label 2 -> CE 2.1041, LA-CE 6.0814."""
    z = tt(np.array([1.0, 0.5, -0.5]).reshape(1, 3, 1, 1))
    t = tl(np.array([2]).reshape(1, 1, 1))
    assert float(build_loss("ce")(z, t)) == pytest.approx(2.1041, abs=ATOL)
    got = float(build_loss("la_ce", prior=[0.95, 0.04, 0.01])(z, t))
    assert got == pytest.approx(6.0814, abs=ATOL)


CALF_E = {
    # branch: (dataset mode with offsets, faithful mode)
    "fisher": (7.4381, -0.9675),
    "logit": (15.1806, -0.9375),
    "arcsine": (0.5882, -0.9823),
    "log10_bce": (0.2149, 0.2149),
    "ln_bce": (0.4948, 0.4948),
    "bce_dice": (0.8909, 0.8909),
}


@pytest.mark.parametrize("branch", sorted(CALF_E))
def test_calf_example_e_dataset_mode(branch: str) -> None:
    assert on_e("calf", branch=branch) == pytest.approx(CALF_E[branch][0], abs=ATOL)


@pytest.mark.parametrize("branch", sorted(CALF_E))
def test_calf_example_e_faithful_forced_branch(branch: str) -> None:
    got = on_e("calf", calf_mode="faithful", branch=branch)
    assert got == pytest.approx(CALF_E[branch][1], abs=ATOL)


def test_calf_faithful_batch_of_one_is_bce_dice() -> None:
    """§7: B = 1 gives NaN skewness, which lands in BCE + Dice."""
    assert on_e("calf", calf_mode="faithful") == pytest.approx(0.8909, abs=ATOL)


def test_calf_case_fraction_example() -> None:
    """§7: fractions -> S 1.9357, K 2.2634 -> log10-BCE (biased estimators)."""
    from segbalance.stats import calf_select

    fractions = [0.0005, 0.001, 0.0012, 0.002, 0.003, 0.004, 0.006, 0.02]
    sel = calf_select(fractions)
    assert sel["skewness"] == pytest.approx(1.9357, abs=ATOL)
    assert sel["excess_kurtosis"] == pytest.approx(2.2634, abs=ATOL)
    assert sel["branch"] == "log10_bce"
    # the loss fed with the same fractions takes that branch: log10-BCE of E = 0.2149
    assert on_e("calf", fractions=fractions) == pytest.approx(0.2149, abs=ATOL)


def _iw_example_labels() -> np.ndarray:
    labels = np.zeros((4, 4, 4), dtype=np.int64)
    labels[0, 0, 0] = 1  # lesion A
    labels[2, 2, 2] = labels[3, 3, 3] = 1  # lesion B: diagonal neighbours (26-connected)
    return labels


def test_inverse_weighting_example_weights() -> None:
    """§3: 4^3 volume, A = 1 voxel, B = 2 diagonal voxels -> 21.3333 / 10.6667 / 1.0."""
    w = inverse_lesion_weights(_iw_example_labels())
    assert isinstance(w, np.ndarray) and w.dtype == np.float32 and w.shape == (4, 4, 4)
    assert w[0, 0, 0] == pytest.approx(21.3333, abs=ATOL)
    assert w[2, 2, 2] == pytest.approx(10.6667, abs=ATOL)
    assert w[3, 3, 3] == pytest.approx(10.6667, abs=ATOL)
    background = np.ones((4, 4, 4), bool)
    background[0, 0, 0] = background[2, 2, 2] = background[3, 3, 3] = False
    np.testing.assert_array_equal(w[background], 1.0)


@pytest.mark.parametrize(
    ("missed", "iw_expected", "plain_expected"),
    [([(0, 0, 0)], 0.3333, 0.2000), ([(2, 2, 2), (3, 3, 3)], 0.3333, 0.5000)],
)
def test_inverse_weighting_example_dice(missed, iw_expected, plain_expected) -> None:
    """§3: hard predictions; iw Dice misses A or B at equal cost (unweighted 0.2 vs 0.5)."""
    labels = _iw_example_labels()
    pred = labels.copy()
    for idx in missed:
        pred[idx] = 0
    logits = tt(np.where(pred > 0, 50.0, -50.0)[None, None])  # p is exactly 0 or 1
    target = tl(labels[None])
    assert float(build_loss("iw_dice")(logits, target)) == pytest.approx(iw_expected, abs=ATOL)
    iw = build_loss("dice", squared_pred=True, smooth_nr=0.0, smooth_dr=1e-8)
    w = torch.as_tensor(inverse_lesion_weights(labels))[None, None].double()
    assert float(iw(logits, target, weight=w)) == pytest.approx(iw_expected, abs=ATOL)
    plain = build_loss("dice", squared_pred=True, smooth_nr=0.0, smooth_dr=1e-8)
    assert float(plain(logits, target)) == pytest.approx(plain_expected, abs=ATOL)


@pytest.mark.parametrize(
    ("radius", "w_fg", "w_bg", "dilated"),
    [(0, 24.5, 0.5104, 1), (1, 4.9, 0.5568, 5), (2, 1.8846, 0.6806, 13)],
)
def test_dbce_7x7_example(radius: int, w_fg: float, w_bg: float, dilated: int) -> None:
    """§6: one centre pixel in 7x7 (2D disk); loss = weighted mean CE with the printed weights."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, size=(1, 1, 7, 7))
    t = np.zeros((1, 7, 7), dtype=np.int64)
    t[0, 3, 3] = 1
    yy, xx = np.mgrid[:7, :7]
    ring = (yy - 3) ** 2 + (xx - 3) ** 2 <= radius**2
    assert ring.sum() == dilated
    w = np.where(ring, w_fg, w_bg)
    zz, y = z[0, 0], t[0].astype(float)
    ell = np.maximum(zz, 0) - zz * y + np.log1p(np.exp(-np.abs(zz)))
    expected = (w * ell).sum() / w.sum()
    got = float(build_loss("dbce", radius=radius)(tt(z), tl(t)))
    # the printed weights are rounded to 4 d.p.; the mean inherits < 1e-4 relative error
    assert got == pytest.approx(expected, rel=2e-4)
    # and the exact weights N / (R+ |r|)
    exact = np.where(ring, 49 / (2 * dilated), 49 / (2 * (49 - dilated)))
    assert got == pytest.approx((exact * ell).sum() / exact.sum(), rel=1e-9)


@pytest.mark.parametrize(
    ("posterior", "raw_logit"), [(0.002, 0.0), (0.01, 1.6175), (0.001, -0.6941)]
)
def test_la_ce_optimal_raw_logit(posterior: float, raw_logit: float) -> None:
    """§2: with prior 0.002 the expected LA-BCE under posterior q is stationary at the printed
    raw logit (z* = logit(q) - delta). Voxel weights q and 1 - q on labels 1 and 0 give the
    expected loss, whose gradient must vanish there."""
    z = torch.full((1, 1, 2, 1), raw_logit, dtype=torch.float64, requires_grad=True)
    t = tl(np.array([1, 0]).reshape(1, 2, 1))
    w = torch.tensor([posterior, 1 - posterior], dtype=torch.float64).reshape(1, 2, 1)
    build_loss("la_ce", prior=0.002)(z, t, weight=w).backward()
    # rounding z* to 4 d.p. leaves |sigma'(z) dz| <= 0.25 * 5e-5
    assert float(z.grad.sum()) == pytest.approx(0.0, abs=1.5e-5)
    # the unadjusted CE is far from stationary there (the prior shift is what moves z*)
    z2 = z.detach().clone().requires_grad_(True)
    build_loss("ce")(z2, t, weight=w).backward()
    assert abs(float(z2.grad.sum())) > 0.1
