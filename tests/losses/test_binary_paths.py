"""The fused binary path (C = 1 sigmoid, C = 2 two-class softmax on z_1 - z_0) against the
numpy references: values, gradients (finite differences), edge cases, and shared calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import build_loss

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, random_weights, tl, tt, value
from .test_gradients import numeric_grad, pm_dice_frozen

PRIOR2 = [0.85, 0.15]

# (name, options, reference, accepts voxel weights)
VALUE_CASES = [
    ("ce", {}, ref.ce, True),
    ("la_ce", {"prior": PRIOR2, "tau": 0.7}, ref.la_ce, True),
    ("focal", {}, ref.focal, True),
    ("focal", {"alpha": 0.25, "gamma": 1.5}, ref.focal, True),
    ("focal", {"alpha": [0.3, 0.9], "gamma": 0.0}, ref.focal, True),
    ("topk_ce", {"k": 20.0}, ref.topk_ce, True),
    ("topk_ce", {"k": 15.0, "per_sample": True}, ref.topk_ce, True),
    ("dice", {}, ref.dice, True),
    ("dice", {"include_background": True, "squared_pred": True, "batch": True}, ref.dice, True),
    ("generalized_dice", {}, ref.generalized_dice, True),
    ("generalized_dice", {"w_type": "iw", "batch": True}, ref.generalized_dice, True),
    ("generalized_dice", {"include_background": False}, ref.generalized_dice, True),
    ("tversky", {"include_background": True}, ref.tversky, True),
    ("asym", {}, ref.asym, True),
    ("asym", {"squared": False, "include_background": True}, ref.asym, True),
    ("pm_dice", {}, ref.pm_dice, True),
    ("pm_dice", {"gamma": 0.5, "squared": False, "batch": True}, ref.pm_dice, True),
    ("pm_dice", {"include_background": False}, ref.pm_dice, True),
    ("topk_dice", {"k": 25.0}, ref.topk_dice, False),
    ("topk_dice", {"k": 30.0, "include_background": False, "batch": True}, ref.topk_dice, False),
    ("balanced_ce", {}, ref.balanced_ce, False),
    ("dbce", {"radius": 1.0}, ref.dbce, False),
]


def _ids(cases):
    return [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o, *_ in cases]


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("mode", ["plain", "ignore", "ignore+weight"])
@pytest.mark.parametrize(
    ("name", "opts", "reference", "weighted"), VALUE_CASES, ids=_ids(VALUE_CASES)
)
def test_binary_values_match_reference(name, opts, reference, weighted, mode, c) -> None:
    if mode == "ignore+weight" and not weighted:
        pytest.skip("computes its own weighting")
    if c == 1 and isinstance(opts.get("alpha"), list):
        pytest.skip("vector alpha needs C >= 2")
    opts = dict(opts)
    if name == "la_ce" and c == 1:
        opts["prior"] = PRIOR2[1]
    ignore = IGNORE if mode != "plain" else None
    z, t = random_case(901 + c, n_classes=c, spatial=(5, 6, 4), fg=0.3, ignore_index=ignore)
    kw = {} if mode != "ignore+weight" else {"weight": random_weights(901, t)}
    got = value(
        build_loss(name, ignore_index=ignore, **opts), z, t, **{k: tt(v) for k, v in kw.items()}
    )
    expected = reference(z, t, ignore_index=ignore, **opts, **kw)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # float32 (the training dtype) within float32 accuracy
    x = tt(z, torch.float32)
    w32 = {k: tt(v, torch.float32) for k, v in kw.items()}
    got32 = float(build_loss(name, ignore_index=ignore, **opts)(x, tl(t), **w32))
    assert got32 == pytest.approx(expected, rel=2e-5, abs=1e-6)


GRAD_CASES = [
    ("ce", {}, ref.ce),
    ("la_ce", {"prior": PRIOR2}, ref.la_ce),
    ("focal", {"alpha": [0.3, 0.8]}, ref.focal),
    ("focal", {"gamma": 0.5}, ref.focal),
    ("topk_ce", {"k": 30.0}, ref.topk_ce),
    ("dice", {"include_background": True}, ref.dice),
    ("generalized_dice", {"w_type": "iw"}, ref.generalized_dice),
    ("tversky", {}, ref.tversky),
    ("asym", {"include_background": True}, ref.asym),
    ("topk_dice", {"k": 30.0}, ref.topk_dice),
    ("pm_dice", {}, None),
    ("balanced_ce", {}, ref.balanced_ce),
    ("dbce", {"radius": 1.0}, ref.dbce),
]


@pytest.mark.parametrize(("name", "opts", "reference"), GRAD_CASES, ids=_ids(GRAD_CASES))
def test_two_class_gradient_matches_finite_differences(name, opts, reference) -> None:
    z, t = random_case(911, n_classes=2, spatial=(3, 4, 2), fg=0.35, logit_scale=1.5)
    x = tt(z).requires_grad_(True)
    build_loss(name, **opts)(x, tl(t)).backward()
    f = pm_dice_frozen(z, t) if name == "pm_dice" else (lambda zz: reference(zz, t, **opts))
    np.testing.assert_allclose(x.grad.numpy(), numeric_grad(f, z), rtol=1e-5, atol=1e-8)


COMPOUNDS = [
    ("dice+ce", {}, lambda z, t, **kw: ref.dice(z, t, **kw) + ref.ce(z, t, **kw)),
    (
        "balanced",
        {"prior": PRIOR2},
        lambda z, t, prior, **kw: ref.la_ce(z, t, prior=prior, **kw) + ref.dice(z, t, **kw),
    ),
    (
        "generalized_dice+0.5*asym+pm_dice",
        {},
        lambda z, t, **kw: ref.generalized_dice(z, t, **kw) + 0.5 * ref.asym(z, t, **kw)
        + ref.pm_dice(z, t, **kw),
    ),
    (
        "ce+2*focal+tversky+topk_ce",
        {"term_options": {"topk_ce": {"k": 30.0}}},
        lambda z, t, **kw: ref.ce(z, t, **kw) + 2 * ref.focal(z, t, **kw)
        + ref.tversky(z, t, **kw) + ref.topk_ce(z, t, k=30.0, **kw),
    ),
]  # fmt: skip


def compound_reference_options(opts: dict) -> dict:
    """The options a COMPOUNDS reference takes: the prior (it depends on C); the others
    are fixed in the reference."""
    return {"prior": opts["prior"]} if "prior" in opts else {}


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("mode", ["plain", "ignore+weight"])
@pytest.mark.parametrize(("spec", "opts", "reference"), COMPOUNDS, ids=[s for s, *_ in COMPOUNDS])
def test_compounds_share_calls_and_match(spec, opts, reference, mode, c) -> None:
    """Merged core requests (one call per compatible group) give each term's own value."""
    ignore = IGNORE if mode != "plain" else None
    z, t = random_case(921 + c, n_classes=c, spatial=(4, 5, 3), fg=0.3, ignore_index=ignore)
    w = random_weights(921, t) if mode != "plain" else None
    opts = dict(opts)
    if c == 1 and "prior" in opts:
        opts["prior"] = PRIOR2[1]
    expected = reference(z, t, ignore_index=ignore, weight=w, **compound_reference_options(opts))
    got = value(
        build_loss(spec, ignore_index=ignore, **opts),
        z,
        t,
        **({} if w is None else {"weight": tt(w)}),
    )
    assert got == pytest.approx(expected, rel=1e-9)


def test_ce_plus_topk_dice_gradient_two_classes() -> None:
    z, t = random_case(931, n_classes=2, spatial=(3, 4, 2), fg=0.35, logit_scale=1.5)
    x = tt(z).requires_grad_(True)
    build_loss("ce+topk_dice", k=30.0)(x, tl(t)).backward()
    f = lambda zz: ref.ce(zz, t) + ref.topk_dice(zz, t, k=30.0)  # noqa: E731
    np.testing.assert_allclose(x.grad.numpy(), numeric_grad(f, z), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "name", ["ce", "la_ce", "focal", "topk_ce", "dice", "tversky", "asym", "topk_dice"]
)
def test_two_channels_equal_one_channel_with_logit_difference(name: str) -> None:
    """METHODS §0 identity: softmax over (z_0, z_1) is the sigmoid of z_1 - z_0, so C = 2 (no
    background channel scored) equals C = 1 on the difference."""
    z, t = random_case(941, n_classes=2, spatial=(6, 5, 4), fg=0.2)
    opts = {"prior": [0.9, 0.1]} if name == "la_ce" else {}
    two = value(build_loss(name, **opts), z, t)
    one_opts = {"prior": 0.1} if name == "la_ce" else {}
    if name == "topk_dice":
        one_opts = opts = {"include_background": False}
        two = value(build_loss(name, **opts), z, t)
    one = value(build_loss(name, **one_opts), z[:, 1:] - z[:, :1], t)
    assert two == pytest.approx(one, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["dice", "generalized_dice", "pm_dice", "tversky", "asym"])
def test_all_foreground_background_channel_is_exact(name: str, dtype) -> None:
    """Confident all-foreground samples: the background channel's tiny sums come from
    sigmoid(-d) itself, not 1 - p, so they match the softmax reference (no cancellation)."""
    rng = np.random.default_rng(951)
    z = np.stack([rng.normal(-9, 1, (2, 5, 6, 4)), rng.normal(9, 1, (2, 5, 6, 4))], 1)
    t = np.ones((2, 5, 6, 4), dtype=np.int64)
    opts = {"include_background": True}
    got = float(build_loss(name, **opts)(tt(z, dtype), tl(t)))
    expected = getattr(ref, name)(z, t, **opts)
    assert np.isfinite(got)
    f32 = dtype == torch.float32
    assert got == pytest.approx(expected, rel=1e-4 if f32 else 1e-9, abs=1e-6 if f32 else 0.0)


def test_extreme_logits_stay_finite() -> None:
    z = np.array([[-300.0, 300.0, 40.0, -40.0, 0.0, 90.0]]).reshape(1, 1, 6, 1)
    t = np.array([[1, 0, 1, 0, 1, 1]]).reshape(1, 6, 1)
    for name in ["ce", "focal", "topk_ce", "dice", "pm_dice", "balanced_ce", "topk_dice"]:
        for c_z in (z, np.concatenate([np.zeros_like(z), z], 1)):
            x = tt(c_z, torch.float32).requires_grad_(True)
            out = build_loss(name)(x, tl(t))
            out.backward()
            assert torch.isfinite(out) and torch.isfinite(x.grad).all(), name
            expected = getattr(ref, name)(c_z, t)
            assert float(out.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("branch", ["ln_bce", "log10_bce", "bce_dice", "fisher", "arcsine"])
@pytest.mark.parametrize("c", [1, 2])
def test_calf_binary_branches(branch: str, c: int) -> None:
    """§7.6 one-vs-rest on softmax probabilities: for C = 2 the class-1 logit is
    log p_1 - log(1 - p_1), computed here from the numpy softmax; gradients too."""
    z, t = random_case(961 + c, n_classes=c, spatial=(3, 4, 2), fg=0.3)
    if c == 2:
        p = np.exp(ref.log_softmax(z))
        logit = (np.log(p[:, 1]) - np.log1p(-p[:, 1]))[:, None]
    else:
        logit = z
    assert value(build_loss("calf", branch=branch), z, t) == pytest.approx(
        ref.calf(logit, t, branch=branch), rel=1e-9
    )
    x = tt(z).requires_grad_(True)
    build_loss("calf", branch=branch)(x, tl(t)).backward()

    def f(zz: np.ndarray) -> float:
        if c == 1:
            return ref.calf(zz, t, branch=branch)
        pp = np.exp(ref.log_softmax(zz))
        return ref.calf((np.log(pp[:, 1]) - np.log1p(-pp[:, 1]))[:, None], t, branch=branch)

    np.testing.assert_allclose(x.grad.numpy(), numeric_grad(f, z), rtol=1e-5, atol=1e-8)
