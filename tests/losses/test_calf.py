"""CALF (METHODS §7): branch losses, offsets, faithful per-batch rule, gradients."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from segbalance.losses import build_loss

from . import _numpy_ref as ref
from .conftest import random_case, tl, tt, value

BRANCHES = ["fisher", "logit", "arcsine", "log10_bce", "ln_bce", "bce_dice"]
RTOL = 1e-5


@pytest.mark.parametrize("faithful", [False, True])
@pytest.mark.parametrize("branch", BRANCHES)
@pytest.mark.parametrize("spatial", [(9, 11), (6, 7, 5)])
def test_branch_against_reference(branch: str, faithful: bool, spatial) -> None:
    z, t = random_case(401, n_classes=1, spatial=spatial, batch=3)
    mode = "faithful" if faithful else "dataset"
    got = value(build_loss("calf", calf_mode=mode, branch=branch), z, t)
    assert got == pytest.approx(ref.calf(z, t, branch=branch, faithful=faithful), rel=RTOL)


@pytest.mark.parametrize("branch", ["fisher", "logit", "arcsine"])
def test_offsets(branch: str) -> None:
    """§7.5: dataset-mode transform branches = faithful value + constant offset."""
    z, t = random_case(403, n_classes=1)
    offset = {"fisher": math.atanh(1 - 1e-7), "logit": ref.CALF_L,
              "arcsine": math.asin(math.sqrt(1 - 1e-7))}[branch]  # fmt: skip
    a = value(build_loss("calf", branch=branch), z, t)
    b = value(build_loss("calf", calf_mode="faithful", branch=branch), z, t)
    assert a - b == pytest.approx(offset, abs=1e-6)


def test_log10_is_bce_over_ln10() -> None:
    z, t = random_case(405, n_classes=1)
    a = value(build_loss("calf", branch="log10_bce"), z, t)
    assert a == pytest.approx(ref.ce(z, t) / math.log(10), rel=1e-9)


@pytest.mark.parametrize(
    ("counts", "branch"),
    [((0, 0, 0, 10), "log10_bce"), ((10, 10, 10, 0), "fisher"), ((0, 5, 10, 10), "arcsine"),
     ((2, 2, 2, 2), "bce_dice")],
)  # fmt: skip
def test_faithful_per_batch_rule(counts: tuple[int, ...], branch: str) -> None:
    """§7.7: the branch comes from the biased skewness of per-sample foreground voxel counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on identical counts -> NaN
        s = scipy.stats.skew(counts)
    expected_branch = (
        "bce_dice" if np.isnan(s) or s == 0 else
        "fisher" if s <= -1 else "logit" if s <= -0.5 else "arcsine" if s < 0 else
        "log10_bce" if s >= 1 else "ln_bce" if s >= 0.5 else
        ("log10_bce" if scipy.stats.kurtosis(counts) < 0 else "bce_dice")
    )  # fmt: skip
    assert expected_branch == branch  # the fixture is what the table says
    rng = np.random.default_rng(407)
    z = rng.normal(0, 2, size=(4, 1, 5, 6, 4))
    t = np.zeros((4, 5, 6, 4), np.int64)
    for b, n in enumerate(counts):
        t[b].reshape(-1)[rng.permutation(t[b].size)[:n]] = 1
    got = value(build_loss("calf", calf_mode="faithful"), z, t)
    assert got == pytest.approx(ref.calf(z, t, branch=branch, faithful=True), rel=RTOL)


@pytest.mark.parametrize(
    "fractions",
    [[0.01, 0.01, 0.01, 0.01, 0.0], [0.0, 0.001, 0.002, 0.004, 0.02], [0.01, 0.02, 0.03]],
)
def test_dataset_mode_fractions_pick_the_table_branch(fractions: list[float]) -> None:
    s, k = scipy.stats.skew(fractions), scipy.stats.kurtosis(fractions)
    branch = (
        "fisher" if s <= -1 else "logit" if s <= -0.5 else "arcsine" if s < 0 else
        "log10_bce" if s >= 1 else "ln_bce" if s >= 0.5 else
        ("log10_bce" if s > 0 and k < 0 else "bce_dice")
    )  # fmt: skip
    z, t = random_case(409, n_classes=1)
    got = value(build_loss("calf", fractions=fractions), z, t)
    assert got == pytest.approx(ref.calf(z, t, branch=branch), rel=RTOL)


def test_degenerate_fractions_fall_back_to_bce_dice() -> None:
    """§7.2: fewer than 3 cases -> BCE + Dice with a warning."""
    z, t = random_case(411, n_classes=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = value(build_loss("calf", fractions=[0.01, 0.02]), z, t)
    assert caught, "expected a warning about the degenerate statistic"
    assert got == pytest.approx(ref.calf(z, t, branch="bce_dice"), rel=RTOL)


def _grad(branch: str, z: np.ndarray, t: np.ndarray, mode: str = "dataset") -> np.ndarray:
    x = tt(z).requires_grad_(True)
    build_loss("calf", calf_mode=mode, branch=branch)(x, tl(t)).backward()
    return x.grad.numpy()


@pytest.mark.parametrize("mode", ["dataset", "faithful"])
def test_transform_gradients(mode: str) -> None:
    """§7: d/dz per voxel (y=1): Fisher -p/(1+p), logit -1, arcsine -sqrt(p(1-p))/2;
    y=0 mirrored; divided by the element count (mean)."""
    rng = np.random.default_rng(413)
    z = rng.uniform(-8, 8, size=(2, 1, 4, 5, 3))
    t = (rng.random((2, 4, 5, 3)) < 0.4).astype(np.int64)
    n = z.size
    p, y = ref.sigmoid(z), t[:, None].astype(float)
    s = 2 * y - 1
    ps = np.where(y == 1, p, 1 - p)  # probability of the true class
    expect = {
        "fisher": -s * ps / (1 + ps) / n,
        "logit": -s * np.ones_like(z) / n,
        "arcsine": -s * 0.5 * np.sqrt(p * (1 - p)) / n,
        "ln_bce": (p - y) / n,
    }
    for branch, g in expect.items():
        np.testing.assert_allclose(_grad(branch, z, t, mode), g, rtol=1e-6, atol=1e-12)


def test_clamp_zeroes_gradient_beyond_L() -> None:
    """§7.4: transform branches clamp z to +-16.118, zero gradient outside; ln-BCE does not."""
    z = np.array([20.0, -20.0, 17.0, -30.0]).reshape(1, 1, 2, 2)
    t = np.array([1, 0, 0, 1]).reshape(1, 2, 2)
    for branch in ("fisher", "logit", "arcsine"):
        np.testing.assert_array_equal(_grad(branch, z, t), 0.0)
    assert np.all(np.abs(_grad("ln_bce", z, t)[0, 0].ravel()[2:]) > 0.2)


@pytest.mark.parametrize("branch", ["ln_bce", "log10_bce", "fisher", "logit", "arcsine"])
def test_multiclass_one_vs_rest(branch: str) -> None:
    """§7.6 (Assumed): one-vs-rest per foreground class on softmax probabilities, mean over
    classes; here one branch string for every class."""
    z, t = random_case(415, n_classes=3, spatial=(6, 7, 5))
    p = np.exp(ref.log_softmax(z))
    per_class = []
    for c in (1, 2):
        logit_c = np.log(p[:, c]) - np.log1p(-p[:, c])
        yc = (t == c).astype(np.int64)
        per_class.append(ref.calf(logit_c[:, None], yc, branch=branch))
    got = value(build_loss("calf", branch=branch), z, t)
    assert got == pytest.approx(np.mean(per_class), rel=RTOL)


def test_multiclass_branch_per_class() -> None:
    """DESIGN Decisions: for C>=2 branch may be a dict {class: branch}."""
    z, t = random_case(417, n_classes=3, spatial=(6, 7, 5))
    p = np.exp(ref.log_softmax(z))
    parts = []
    for c, branch in ((1, "ln_bce"), (2, "arcsine")):
        logit_c = np.log(p[:, c]) - np.log1p(-p[:, c])
        parts.append(ref.calf(logit_c[:, None], (t == c).astype(np.int64), branch=branch))
    got = value(build_loss("calf", branch={1: "ln_bce", 2: "arcsine"}), z, t)
    assert got == pytest.approx(np.mean(parts), rel=RTOL)
    got_str_keys = value(build_loss("calf", branch={"1": "ln_bce", "2": "arcsine"}), z, t)
    assert got_str_keys == pytest.approx(np.mean(parts), rel=RTOL)


def test_binary_branch_differs_from_torch_bce_only_by_scale() -> None:
    """Sanity of the reference itself: ln-BCE branch is torch's BCE-with-logits."""
    z, t = random_case(419, n_classes=1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(tt(z)[:, 0], tt(t))
    assert value(build_loss("calf", branch="ln_bce"), z, t) == pytest.approx(float(bce), rel=1e-9)
