"""Region and focal losses against MONAI 1.6 where the formulas coincide (METHODS §1.3-§1.6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss, FocalLoss, GeneralizedDiceLoss, TverskyLoss

from segbalance.losses import build_loss

from .conftest import random_case, tl, tt

RTOL = 1e-6
SPATIAL = {"2d": (9, 11), "3d": (6, 7, 5)}


def _monai_inputs(z: np.ndarray, t: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return tt(z), tt(t[:, None])  # float labels: MONAI norms need a float target


def _monai_act(c: int) -> dict[str, bool]:
    return {"sigmoid": True} if c == 1 else {"softmax": True, "to_onehot_y": True}


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("squared_pred", [False, True])
def test_dice_vs_monai(dim, c, include_background, batch, squared_pred) -> None:
    z, t = random_case(31, n_classes=c, spatial=SPATIAL[dim])
    opts = {"include_background": include_background, "batch": batch, "squared_pred": squared_pred}
    ours = float(build_loss("dice", **opts)(tt(z), tl(t)))
    # MONAI warns and keeps the single channel for C=1 with include_background=False
    ib = True if c == 1 else include_background
    monai = DiceLoss(include_background=ib, batch=batch, squared_pred=squared_pred, **_monai_act(c))
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_generalized_dice_vs_monai_multiclass(dim, batch, include_background) -> None:
    z, t = random_case(37, n_classes=3, spatial=SPATIAL[dim])
    t[0][t[0] == 2] = 1  # class 2 absent from sample 0: exercises the infinite-weight rule
    ours = float(
        build_loss("generalized_dice", batch=batch, include_background=include_background)(
            tt(z), tl(t)
        )
    )
    monai = GeneralizedDiceLoss(
        include_background=include_background, batch=batch, softmax=True, to_onehot_y=True
    )
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


@pytest.mark.parametrize("batch", [False, True])
def test_generalized_dice_binary_is_two_channel_monai(batch: bool) -> None:
    """§1.4: C=1 uses channels [1-p, p]; softmax of logits (0, z) gives exactly that."""
    z, t = random_case(41, n_classes=1, spatial=(6, 7, 5))
    t[1] = 0  # an empty sample: its foreground weight is infinite -> max finite weight
    ours = float(build_loss("generalized_dice", batch=batch)(tt(z), tl(t)))
    two = np.concatenate([np.zeros_like(z), z], axis=1)
    monai = GeneralizedDiceLoss(
        include_background=True, batch=batch, softmax=True, to_onehot_y=True
    )
    assert ours == pytest.approx(float(monai(*_monai_inputs(two, t))), rel=RTOL)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.7), (0.5, 0.5), (0.9, 0.2)])
@pytest.mark.parametrize("batch", [False, True])
def test_tversky_vs_monai(dim, c, alpha, beta, batch) -> None:
    z, t = random_case(43, n_classes=c, spatial=SPATIAL[dim])
    ours = float(build_loss("tversky", alpha=alpha, beta=beta, batch=batch)(tt(z), tl(t)))
    monai = TverskyLoss(
        include_background=c == 1, alpha=alpha, beta=beta, batch=batch, **_monai_act(c)
    )
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


def test_tversky_default_alpha_beta_are_salehi() -> None:
    """§1.5: defaults alpha 0.3 (FP), beta 0.7 (FN), not MONAI's 0.5/0.5."""
    z, t = random_case(47, n_classes=1, spatial=(6, 7, 5))
    ours = float(build_loss("tversky")(tt(z), tl(t)))
    monai = TverskyLoss(alpha=0.3, beta=0.7, sigmoid=True)
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)
    assert ours != pytest.approx(float(TverskyLoss(sigmoid=True)(*_monai_inputs(z, t))), rel=1e-3)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_focal_binary_vs_monai(dim, alpha, gamma) -> None:
    z, t = random_case(53, n_classes=1, spatial=SPATIAL[dim])
    ours = float(build_loss("focal", alpha=alpha, gamma=gamma)(tt(z), tl(t)))
    monai = FocalLoss(alpha=alpha, gamma=gamma, use_softmax=False)
    assert ours == pytest.approx(float(monai(tt(z), tt(t[:, None]))), rel=RTOL)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("alpha", [None, 0.25, [0.2, 0.5, 0.3]])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_softmax_vs_monai_times_c(dim, alpha, gamma) -> None:
    """DESIGN: ours is the voxel mean; MONAI's reduction="mean" also divides by C.
    MONAI scalar alpha: 1 - alpha on background, alpha on the others (same as ours)."""
    c = 3
    z, t = random_case(59, n_classes=c, spatial=SPATIAL[dim])
    ours = float(build_loss("focal", alpha=alpha, gamma=gamma)(tt(z), tl(t)))
    monai = FocalLoss(alpha=alpha, gamma=gamma, use_softmax=True, to_onehot_y=True)
    assert ours == pytest.approx(c * float(monai(*_monai_inputs(z, t))), rel=RTOL)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_ce_vs_monai(dim, include_background) -> None:
    z, t = random_case(61, n_classes=3, spatial=SPATIAL[dim])
    ours = float(build_loss("dice+ce", include_background=include_background)(tt(z), tl(t)))
    monai = DiceCELoss(include_background=include_background, to_onehot_y=True, softmax=True)
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


def test_dice_ce_default_excludes_background() -> None:
    """§1.3: our dice default is include_background=False for C>=2 (MONAI's is True)."""
    z, t = random_case(67, n_classes=3, spatial=(6, 7, 5))
    ours = float(build_loss("ce+dice")(tt(z), tl(t)))
    monai = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True)
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


def test_segvol_dice_variant() -> None:
    """§1.3/§9.5: smooth_nr=0, smooth_dr=1 is SegVol's BinaryDiceLoss 2I / (sum p + sum y + 1)."""
    z, t = random_case(71, n_classes=1, spatial=(6, 7, 5))
    ours = float(build_loss("dice", smooth_nr=0.0, smooth_dr=1.0)(tt(z), tl(t)))
    monai = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1.0)
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_generalized_dice_class_absent_from_whole_batch(batch, include_background) -> None:
    """Infinite weights when a class is missing from every sample (batch=True: one weight)."""
    z, t = random_case(73, n_classes=3, spatial=(6, 7, 5))
    t[t == 2] = 0
    ours = float(
        build_loss("generalized_dice", batch=batch, include_background=include_background)(
            tt(z), tl(t)
        )
    )
    monai = GeneralizedDiceLoss(
        include_background=include_background, batch=batch, softmax=True, to_onehot_y=True
    )
    assert ours == pytest.approx(float(monai(*_monai_inputs(z, t))), rel=RTOL)


@pytest.mark.parametrize("batch", [False, True])
def test_generalized_dice_no_finite_weight_is_zero(batch: bool) -> None:
    """§1.4: no finite weight -> all weights 0 -> L = 1 - s_nr / s_dr = 0 (MONAI)."""
    z, _ = random_case(79, n_classes=3, spatial=(6, 7, 5))
    t = np.zeros((2, 6, 7, 5), np.int64)
    loss = build_loss("generalized_dice", include_background=False, batch=batch)
    assert float(loss(tt(z), tl(t))) == pytest.approx(0.0, abs=1e-12)
    monai = GeneralizedDiceLoss(
        include_background=False, batch=batch, softmax=True, to_onehot_y=True
    )
    assert float(monai(*_monai_inputs(z, t))) == pytest.approx(0.0, abs=1e-12)
