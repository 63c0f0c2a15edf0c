"""Compound losses: "a*x+y" parsing, option routing, term_options, weights (DESIGN Decisions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import build_loss, inverse_lesion_weights

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, random_weights, tl, tt, value

RTOL = 1e-5


@pytest.mark.parametrize("c", [1, 3])
def test_weighted_sum(c: int) -> None:
    prior = 0.002 if c == 1 else [0.97, 0.02, 0.01]
    z, t = random_case(101, n_classes=c)
    got = value(build_loss("0.5*la_ce+dice", prior=prior), z, t)
    assert got == pytest.approx(0.5 * ref.la_ce(z, t, prior=prior) + ref.dice(z, t), rel=RTOL)


def test_weights_on_every_term_and_spaces() -> None:
    z, t = random_case(103, n_classes=3)
    got = value(build_loss("2*ce + 0.25*focal + 1.5*tversky"), z, t)
    expected = 2 * ref.ce(z, t) + 0.25 * ref.focal(z, t) + 1.5 * ref.tversky(z, t)
    assert got == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("c", [1, 3])
def test_balanced_is_la_ce_plus_dice(c: int) -> None:
    prior = 0.01 if c == 1 else [0.9, 0.07, 0.03]
    z, t = random_case(107, n_classes=c, spatial=(9, 11))
    a = value(build_loss("balanced", prior=prior), z, t)
    b = value(build_loss("la_ce+dice", prior=prior), z, t)
    assert a == pytest.approx(b, rel=1e-12)
    assert a == pytest.approx(ref.la_ce(z, t, prior=prior) + ref.dice(z, t), rel=RTOL)


def test_balanced_routes_options_after_expansion() -> None:
    """Decisions: balanced expands to la_ce+dice before routing (tau -> la_ce, batch -> dice)."""
    z, t = random_case(109, n_classes=1)
    got = value(build_loss("balanced", prior=0.05, tau=0.5, batch=True), z, t)
    expected = ref.la_ce(z, t, prior=0.05, tau=0.5) + ref.dice(z, t, batch=True)
    assert got == pytest.approx(expected, rel=RTOL)


def test_option_routed_to_the_one_accepting_term() -> None:
    z, t = random_case(113, n_classes=1)
    got = value(build_loss("ce+topk_dice", k=25), z, t)
    assert got == pytest.approx(ref.ce(z, t) + ref.topk_dice(z, t, k=25), rel=RTOL)


@pytest.mark.parametrize("c", [1, 3])
def test_ignore_index_goes_to_every_term(c: int) -> None:
    z, t = random_case(127, n_classes=c, ignore_index=IGNORE)
    got = value(build_loss("ce+dice+topk_dice", ignore_index=IGNORE), z, t)
    expected = (
        ref.ce(z, t, ignore_index=IGNORE)
        + ref.dice(z, t, ignore_index=IGNORE)
        + ref.topk_dice(z, t, ignore_index=IGNORE)
    )
    assert got == pytest.approx(expected, rel=RTOL)


def test_term_options() -> None:
    z, t = random_case(131, n_classes=3)
    loss = build_loss("dice+ce", term_options={"dice": {"smooth_nr": 0.0, "smooth_dr": 1.0}})
    got = value(loss, z, t)
    expected = ref.dice(z, t, smooth_nr=0.0, smooth_dr=1.0) + ref.ce(z, t)
    assert got == pytest.approx(expected, rel=RTOL)


def test_term_options_resolve_shared_option() -> None:
    """alpha is accepted by focal and tversky: term_options gives each its own value."""
    z, t = random_case(137, n_classes=1)
    loss = build_loss(
        "focal+tversky", term_options={"focal": {"alpha": 0.25}, "tversky": {"alpha": 0.6}}
    )
    expected = ref.focal(z, t, alpha=0.25) + ref.tversky(z, t, alpha=0.6)
    assert value(loss, z, t) == pytest.approx(expected, rel=RTOL)


def test_shared_option_without_term_options_is_an_error() -> None:
    with pytest.raises(ValueError, match="term_options"):
        build_loss("focal+tversky", alpha=0.5)
    with pytest.raises(ValueError, match="term_options"):
        build_loss("dice+tversky", smooth_nr=0.0)
    with pytest.raises(ValueError, match="term_options"):
        build_loss("topk_ce+topk_dice", k=20)


def test_option_no_term_accepts_is_an_error() -> None:
    with pytest.raises(ValueError, match="gamma"):
        build_loss("ce+dice", gamma=2.0)


def test_term_options_for_absent_term_is_an_error() -> None:
    with pytest.raises(ValueError):
        build_loss("ce+dice", term_options={"focal": {"gamma": 1.0}})


def test_term_options_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="smoth_nr"):
        build_loss("ce+dice", term_options={"dice": {"smoth_nr": 0.0}})


@pytest.mark.parametrize("spec", ["ce+", "+dice", "ce++dice", "0.5*", "*dice", "0.5*+dice", ""])
def test_malformed_compound(spec: str) -> None:
    with pytest.raises(ValueError):
        build_loss(spec)


@pytest.mark.parametrize("c", [1, 3])
def test_voxel_weights_go_to_every_term(c: int) -> None:
    z, t = random_case(139, n_classes=c)
    w = random_weights(139, t)
    got = value(build_loss("ce+dice"), z, t, weight=tt(w[:, None]))
    expected = ref.ce(z, t, weight=w) + ref.dice(z, t, weight=w)
    assert got == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("layout", ["b1s", "bs"])
def test_weight_layouts_accepted(layout: str) -> None:
    z, t = random_case(149, n_classes=3, spatial=(9, 11))
    w = random_weights(149, t)
    wt = tt(w[:, None] if layout == "b1s" else w)
    got = value(build_loss("focal+generalized_dice"), z, t, weight=wt)
    expected = ref.focal(z, t, weight=w) + ref.generalized_dice(z, t, weight=w)
    assert got == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize(
    "bad_shape",
    [(2, 3, 6, 7, 5), (2, 2, 6, 7, 5), (1, 6, 7, 5), (2, 6, 7, 4), (2, 1, 6, 7), (6, 7, 5)],
)
def test_bad_weight_shapes(bad_shape: tuple[int, ...]) -> None:
    z, t = random_case(151, n_classes=3)
    with pytest.raises(ValueError):
        build_loss("ce+dice")(tt(z), tl(t), weight=torch.ones(bad_shape, dtype=torch.float64))


@pytest.mark.parametrize("name", ["ce+dice", "focal", "generalized_dice", "la_ce+tversky"])
@pytest.mark.parametrize("dim", [(6, 7, 5), (9, 11)])
def test_inverse_lesion_voxel_weighting(name: str, dim: tuple[int, ...]) -> None:
    """voxel_weighting="inverse_lesion" = passing inverse_lesion_weights(target) per sample."""
    z, t = random_case(157, n_classes=3, spatial=dim, fg=0.08)
    opts = {"prior": [0.9, 0.07, 0.03]} if "la_ce" in name else {}
    auto = value(build_loss(name, voxel_weighting="inverse_lesion", **opts), z, t)
    w_torch = inverse_lesion_weights(tl(t), batched=True)
    assert isinstance(w_torch, torch.Tensor) and w_torch.dtype == torch.float32
    explicit = value(build_loss(name, **opts), z, t, weight=w_torch.double())
    assert auto == pytest.approx(explicit, rel=1e-6)
    # and the weights are the independent scipy ones of METHODS §3
    w_ref = np.stack([ref.inverse_lesion_weights(t[b]) for b in range(t.shape[0])])
    expected = value(build_loss(name, **opts), z, t, weight=tt(w_ref))
    assert auto == pytest.approx(expected, rel=1e-6)
    assert auto != pytest.approx(value(build_loss(name, **opts), z, t), rel=1e-3)


def test_explicit_weight_overrides_voxel_weighting() -> None:
    """DESIGN: voxel_weighting computes weights from the target only when no weight is passed."""
    z, t = random_case(163, n_classes=1, fg=0.08)
    w = random_weights(163, t)
    got = value(build_loss("dice", voxel_weighting="inverse_lesion"), z, t, weight=tt(w))
    assert got == pytest.approx(ref.dice(z, t, weight=w), rel=RTOL)


@pytest.mark.parametrize("c", [1, 3])
def test_iw_presets(c: int) -> None:
    z, t = random_case(167, n_classes=c, fg=0.08)
    w = np.stack([ref.inverse_lesion_weights(t[b]) for b in range(t.shape[0])])
    got_dice = value(build_loss("iw_dice"), z, t)
    expected_dice = ref.dice(z, t, squared_pred=True, smooth_nr=0.0, smooth_dr=1e-8, weight=w)
    assert got_dice == pytest.approx(expected_dice, rel=RTOL)
    got_focal = value(build_loss("iw_focal"), z, t)
    assert got_focal == pytest.approx(ref.focal(z, t, alpha=0.75, gamma=2.0, weight=w), rel=RTOL)


def test_iw_preset_in_compound() -> None:
    z, t = random_case(173, n_classes=1, fg=0.08)
    w = np.stack([ref.inverse_lesion_weights(t[b]) for b in range(t.shape[0])])
    got = value(build_loss("iw_dice+ce"), z, t)
    expected = ref.dice(z, t, squared_pred=True, smooth_nr=0.0, smooth_dr=1e-8, weight=w)
    # voxel_weighting belongs to the preset term only; ce stays unweighted
    assert got == pytest.approx(expected + ref.ce(z, t), rel=RTOL)


@pytest.mark.parametrize("c", [1, 3])
def test_compound_gradient_is_sum_of_term_gradients(c: int) -> None:
    prior = 0.05 if c == 1 else [0.9, 0.07, 0.03]
    z, t = random_case(179, n_classes=c)
    terms = [("la_ce", 0.5, {"prior": prior}), ("dice", 1.0, {}), ("topk_dice", 2.0, {"k": 20})]
    spec = "+".join(f"{wt}*{name}" for name, wt, _ in terms)
    x = tt(z).requires_grad_(True)
    build_loss(spec, term_options={n: o for n, _, o in terms if o})(x, tl(t)).backward()
    total = torch.zeros_like(x)
    for name, wt, opts in terms:
        xi = tt(z).requires_grad_(True)
        (wt * build_loss(name, **opts)(xi, tl(t))).backward()
        total += xi.grad
    torch.testing.assert_close(x.grad, total, rtol=1e-10, atol=1e-12)


def test_balanced_with_term_options() -> None:
    z, t = random_case(181, n_classes=1)
    loss = build_loss("balanced", prior=0.05, term_options={"dice": {"batch": True}})
    expected = ref.la_ce(z, t, prior=0.05) + ref.dice(z, t, batch=True)
    assert value(loss, z, t) == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("c", [1, 3])
def test_la_ce_tau_zero_is_ce(c: int) -> None:
    z, t = random_case(191, n_classes=c)
    prior = 0.01 if c == 1 else [0.9, 0.07, 0.03]
    assert value(build_loss("la_ce", prior=prior, tau=0.0), z, t) == pytest.approx(
        ref.ce(z, t), rel=1e-9
    )
