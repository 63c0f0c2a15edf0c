"""Bad input raises ValueError naming what was wrong (DESIGN "Contract details")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import available_losses, build_loss

from .conftest import random_case, tl, tt

OWN_WEIGHTING = ["balanced_ce", "dbce", "calf", "topk_dice"]


def _build(name: str, **opts):
    if name == "calf":
        opts.setdefault("branch", "ln_bce")
    return build_loss(name, **opts)


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("dicee", "dice"),
        ("focall", "focal"),
        ("tversk", "tversky"),
        ("generalised_dice", "generalized_dice"),
    ],
)
def test_unknown_loss_name_suggests(wrong: str, right: str) -> None:
    with pytest.raises(ValueError, match="did you mean") as info:
        build_loss(wrong)
    assert wrong in str(info.value) and right in str(info.value)


def test_unknown_loss_name_in_compound() -> None:
    with pytest.raises(ValueError, match="tverski"):
        build_loss("ce+tverski")


def test_unknown_option_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean") as info:
        build_loss("dice", smoth_nr=0.0)
    assert "smoth_nr" in str(info.value) and "smooth_nr" in str(info.value)


@pytest.mark.parametrize("name", ["ce", "focal", "topk_ce", "pm_dice"])
def test_option_of_another_loss_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="squared_pred"):
        build_loss(name, squared_pred=True)


@pytest.mark.parametrize("name", ["la_ce", "balanced", "0.5*la_ce+dice"])
def test_missing_prior(name: str) -> None:
    z, t = random_case(201, n_classes=1)
    with pytest.raises(ValueError, match="prior"):
        build_loss(name)(tt(z), tl(t))


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.1, 1.5])
def test_binary_prior_outside_open_interval(prior: float) -> None:
    with pytest.raises(ValueError, match="prior"):
        build_loss("la_ce", prior=prior)


@pytest.mark.parametrize("prior", [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.5, 0.6, -0.1]])
def test_multiclass_prior_outside_open_interval(prior: list[float]) -> None:
    with pytest.raises(ValueError, match="prior"):
        build_loss("balanced", prior=prior)


def test_prior_length_must_match_classes() -> None:
    z, t = random_case(203, n_classes=3)
    with pytest.raises(ValueError, match="prior"):
        build_loss("la_ce", prior=[0.9, 0.1])(tt(z), tl(t))


def test_calf_dataset_mode_needs_fractions_or_branch() -> None:
    with pytest.raises(ValueError) as info:
        z, t = random_case(205, n_classes=1)
        build_loss("calf")(tt(z), tl(t))
    assert "fractions" in str(info.value) and "branch" in str(info.value)


def test_calf_unknown_branch() -> None:
    with pytest.raises(ValueError, match="branch"):
        z, t = random_case(207, n_classes=1)
        build_loss("calf", branch="fishr")(tt(z), tl(t))


def test_unknown_calf_mode() -> None:
    with pytest.raises(ValueError, match="calf_mode"):
        build_loss("calf", calf_mode="batch", branch="ln_bce")


@pytest.mark.parametrize("k", [0.0, -5.0, 100.5, 250.0])
@pytest.mark.parametrize("name", ["topk_ce", "topk_dice"])
def test_topk_percent_outside_range(name: str, k: float) -> None:
    with pytest.raises(ValueError, match="k"):
        build_loss(name, k=k)


def test_unknown_voxel_weighting() -> None:
    with pytest.raises(ValueError, match="voxel_weighting"):
        build_loss("dice", voxel_weighting="inverse_volume")


def test_unknown_selection_and_w_type() -> None:
    with pytest.raises(ValueError, match="selection"):
        build_loss("topk_dice", selection="random")
    with pytest.raises(ValueError, match="w_type"):
        build_loss("generalized_dice", w_type="cube")


@pytest.mark.parametrize("name", OWN_WEIGHTING)
def test_own_weighting_losses_reject_weights(name: str) -> None:
    z, t = random_case(211, n_classes=1)
    w = torch.ones(t.shape, dtype=torch.float64)
    with pytest.raises(ValueError):
        _build(name)(tt(z), tl(t), weight=w)
    with pytest.raises(ValueError):
        _build(name, voxel_weighting="inverse_lesion")(tt(z), tl(t))


@pytest.mark.parametrize("name", ["ce+topk_dice", "dice+balanced_ce", "focal+dbce"])
def test_compound_with_own_weighting_rejects_weights(name: str) -> None:
    z, t = random_case(213, n_classes=1)
    with pytest.raises(ValueError):
        build_loss(name)(tt(z), tl(t), weight=torch.ones(t.shape, dtype=torch.float64))
    with pytest.raises(ValueError):
        build_loss(name, voxel_weighting="inverse_lesion")(tt(z), tl(t))


@pytest.mark.parametrize("name", ["ce", "dice", "focal", "topk_dice", "ce+dice"])
def test_shape_mismatch(name: str) -> None:
    z, t = random_case(215, n_classes=3, spatial=(6, 7, 5))
    with pytest.raises(ValueError, match=r"target|logits"):
        build_loss(name)(tt(z), tl(t[:, :, :-1]))
    with pytest.raises(ValueError, match=r"target|logits"):
        build_loss(name)(tt(z), tl(t[:1]))  # batch mismatch
    with pytest.raises(ValueError, match=r"target|logits"):
        build_loss(name)(tt(z), tl(np.stack([t, t], axis=1)))  # two label channels


def test_logits_need_channel_and_spatial_axes() -> None:
    with pytest.raises(ValueError, match="logits"):
        build_loss("ce")(torch.zeros(2, 6, dtype=torch.float64), torch.zeros(2, 6).long())
    with pytest.raises(ValueError, match="logits"):
        shape = (1, 1, 2, 2, 2, 2)  # 4D spatial
        build_loss("ce")(torch.zeros(shape, dtype=torch.float64), torch.zeros(shape).long())


@pytest.mark.parametrize(("c", "bad"), [(3, 3), (3, -1), (1, 2), (1, -1), (3, 255)])
@pytest.mark.parametrize("name", ["ce", "dice", "focal", "la_ce"])
def test_labels_outside_range(c: int, bad: int, name: str) -> None:
    z, t = random_case(217, n_classes=c)
    t[0, 0, 0, 0] = bad
    opts = {"prior": 0.1 if c == 1 else [0.8, 0.1, 0.1]} if name == "la_ce" else {}
    with pytest.raises(ValueError, match=r"target|label"):
        build_loss(name, **opts)(tt(z), tl(t))


def test_ignore_index_label_is_allowed() -> None:
    z, t = random_case(219, n_classes=3)
    t[0, 0, 0, 0] = -1
    out = build_loss("ce+dice", ignore_index=-1)(tt(z), tl(t))
    assert torch.isfinite(out)


@pytest.mark.parametrize("c", [1, 3])
def test_non_integral_float_target(c: int) -> None:
    z, t = random_case(221, n_classes=c)
    soft = t.astype(np.float64)
    soft[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="target"):
        build_loss("ce+dice")(tt(z), tt(soft))


def test_integer_logits_rejected() -> None:
    z, t = random_case(223, n_classes=1)
    with pytest.raises((ValueError, TypeError), match="logits"):
        build_loss("ce")(torch.zeros(z.shape, dtype=torch.long), tl(t))


@pytest.mark.parametrize("name", ["ce", "dice", "focal", "la_ce", "calf"])
def test_error_messages_list_valid_options(name: str) -> None:
    """DESIGN: a wrong option name raises ValueError listing the valid ones."""
    with pytest.raises(ValueError) as info:
        _build(name, definitely_not_an_option=1)
    assert "ignore_index" in str(info.value)


def test_available_losses_is_sorted_and_complete() -> None:
    names = available_losses()
    assert names == sorted(names)
    required = {"ce", "balanced_ce", "dbce", "focal", "topk_ce", "la_ce", "dice",
                "generalized_dice", "tversky", "asym", "topk_dice", "pm_dice", "balanced",
                "calf", "iw_dice", "iw_focal"}  # fmt: skip
    assert required <= set(names)
