"""Hypothesis properties: finiteness on edge cases, identities of METHODS §0-§5."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segbalance.losses import available_losses, build_loss

from . import _numpy_ref as ref
from .conftest import IGNORE, tl, tt

SPATIAL = {2: (5, 6), 3: (4, 5, 3)}
CALF_BRANCHES = ["fisher", "logit", "arcsine", "log10_bce", "ln_bce", "bce_dice"]


def required_options(name: str, c: int) -> dict[str, Any]:
    """Options without which a name cannot be built (prior, CALF branch); cheap DBCE radius."""
    if name in ("la_ce", "balanced"):
        return {"prior": 0.02 if c == 1 else [0.9, 0.06, 0.04]}
    if name == "calf":
        return {"branch": "ln_bce"}
    if name == "dbce":
        return {"radius": 1.0}
    return {}


@st.composite
def edge_cases(draw, scales=(0.5, 3.0, 1e4)):
    """(z, t, c): logits and labels over edge-case kinds (empty, full, single voxel, random)."""
    c = draw(st.sampled_from([1, 3]))
    dim = draw(st.sampled_from([2, 3]))
    batch = draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["empty", "full", "single", "random"]))
    scale = draw(st.sampled_from(scales))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (batch, *SPATIAL[dim])
    n_lab = max(2, c)
    if kind == "empty":
        t = np.zeros(shape, np.int64)
    elif kind == "full":
        t = rng.integers(1, n_lab, size=shape)
    elif kind == "single":
        t = np.zeros(shape, np.int64)
        t.reshape(batch, -1)[:, rng.integers(t[0].size)] = n_lab - 1
    else:
        t = rng.integers(0, n_lab, size=shape)
    z = rng.normal(0.0, 1.0, size=(batch, c, *SPATIAL[dim])) * scale
    return z, t, c


ALL_NAMES = available_losses()


@settings(max_examples=30, deadline=None)
@given(case=edge_cases())
def test_values_and_gradients_finite(case) -> None:
    z, t, c = case
    for name in ALL_NAMES:
        x = tt(z, torch.float32).requires_grad_(True)
        out = build_loss(name, **required_options(name, c))(x, tl(t))
        out.backward()
        assert out.dtype == torch.float32 and out.ndim == 0, name
        assert torch.isfinite(out), (name, float(out))
        assert torch.isfinite(x.grad).all(), name


@settings(max_examples=25, deadline=None)
@given(case=edge_cases(), branch=st.sampled_from(CALF_BRANCHES), faithful=st.booleans())
def test_calf_branches_finite(case, branch: str, faithful: bool) -> None:
    z, t, _c = case
    mode = "faithful" if faithful else "dataset"
    x = tt(z, torch.float32).requires_grad_(True)
    out = build_loss("calf", calf_mode=mode, branch=branch)(x, tl(t))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()
    if not faithful:
        assert float(out.detach()) >= -1e-6  # §7.5: offsets make every branch non-negative


@settings(max_examples=25, deadline=None)
@given(case=edge_cases())
def test_autocast_bf16_is_disabled_inside(case) -> None:
    """§0: losses run with autocast disabled and return float32 under a bf16 autocast."""
    z, t, c = case
    for name in ALL_NAMES:
        loss = build_loss(name, **required_options(name, c))
        plain = loss(tt(z, torch.float32), tl(t))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = loss(tt(z, torch.float32), tl(t))
            auto_bf16 = loss(tt(z, torch.bfloat16), tl(t))
        assert auto.dtype == torch.float32 and auto_bf16.dtype == torch.float32, name
        assert torch.isfinite(auto_bf16), name
        torch.testing.assert_close(auto, plain, rtol=1e-6, atol=1e-7, msg=name)


@settings(max_examples=30, deadline=None)
@given(case=edge_cases(scales=(0.5, 2.0)), ignore=st.booleans())
def test_every_loss_matches_reference_on_edge_cases(case, ignore: bool) -> None:
    """The numpy references of METHODS on empty / full / single-voxel targets, B = 1 or 2."""
    z, t, c = case
    ig = None
    if ignore:
        t = t.copy()
        t.reshape(t.shape[0], -1)[:, -1] = IGNORE
        ig = IGNORE
    prior = 0.02 if c == 1 else [0.9, 0.06, 0.04]
    checks = {
        "ce": (build_loss("ce", ignore_index=ig), ref.ce(z, t, ignore_index=ig)),
        "balanced_ce": (
            build_loss("balanced_ce", ignore_index=ig),
            ref.balanced_ce(z, t, ignore_index=ig),
        ),
        "dbce": (
            build_loss("dbce", radius=1.0, ignore_index=ig),
            ref.dbce(z, t, radius=1.0, ignore_index=ig),
        ),
        "focal": (build_loss("focal", ignore_index=ig), ref.focal(z, t, ignore_index=ig)),
        "topk_ce": (build_loss("topk_ce", ignore_index=ig), ref.topk_ce(z, t, ignore_index=ig)),
        "la_ce": (
            build_loss("la_ce", prior=prior, ignore_index=ig),
            ref.la_ce(z, t, prior=prior, ignore_index=ig),
        ),
        "dice": (build_loss("dice", ignore_index=ig), ref.dice(z, t, ignore_index=ig)),
        "dice_batch": (
            build_loss("dice", batch=True, ignore_index=ig),
            ref.dice(z, t, batch=True, ignore_index=ig),
        ),
        "generalized_dice": (
            build_loss("generalized_dice", ignore_index=ig),
            ref.generalized_dice(z, t, ignore_index=ig),
        ),
        "tversky": (build_loss("tversky", ignore_index=ig), ref.tversky(z, t, ignore_index=ig)),
        "asym": (build_loss("asym", ignore_index=ig), ref.asym(z, t, ignore_index=ig)),
        "topk_dice": (
            build_loss("topk_dice", k=30, ignore_index=ig),
            ref.topk_dice(z, t, k=30, ignore_index=ig),
        ),
        "pm_dice": (build_loss("pm_dice", ignore_index=ig), ref.pm_dice(z, t, ignore_index=ig)),
    }
    for name, (loss, expected) in checks.items():
        got = float(loss(tt(z), tl(t)))
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-8), name


def _perfect_logits(t: np.ndarray, c: int) -> np.ndarray:
    if c == 1:
        return np.where(t[:, None] > 0, 30.0, -30.0)
    return 30.0 * np.stack([(t == k) for k in range(c)], axis=1).astype(np.float64)


@settings(max_examples=30, deadline=None)
@given(case=edge_cases(scales=(1.0,)), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_dice_family_zero_for_perfect_prediction(case, dtype) -> None:
    _z, t, c = case
    zp = tt(_perfect_logits(t, c), dtype)
    names = ["dice", "tversky", "generalized_dice", "pm_dice", "topk_dice"]
    scored = [1] if c == 1 else [1, 2]
    if all((t[b] == k).any() for b in range(t.shape[0]) for k in scored):
        # no numerator smoothing: a ratio is 1 only when its class is present
        names += ["asym", "iw_dice"]
    for name in names:
        assert float(build_loss(name)(zp, tl(t))) == pytest.approx(0.0, abs=1e-4), name


@settings(max_examples=30, deadline=None)
@given(case=edge_cases(scales=(0.5, 3.0)))
def test_la_ce_with_neutral_prior_is_ce(case) -> None:
    """§2: prior 0.5 (binary) or uniform (multi-class) shifts nothing."""
    z, t, c = case
    prior = 0.5 if c == 1 else [1 / 3] * 3
    a = float(build_loss("la_ce", prior=prior)(tt(z), tl(t)))
    b = float(build_loss("ce")(tt(z), tl(t)))
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def _two_channel_pairs(pi: float) -> list[tuple[str, dict, dict]]:
    """(name, options for C=1, options for the 2-channel softmax (0, z))."""
    return [
        ("ce", {}, {}),
        ("focal", {}, {}),
        ("focal", {"alpha": 0.3, "gamma": 1.5}, {"alpha": 0.3, "gamma": 1.5}),
        ("la_ce", {"prior": pi}, {"prior": [1 - pi, pi]}),
        ("topk_ce", {"k": 20}, {"k": 20}),
        ("balanced_ce", {}, {}),
        ("dbce", {"radius": 1}, {"radius": 1}),
        ("dice", {}, {}),
        ("tversky", {}, {}),
        ("asym", {}, {}),
        ("generalized_dice", {}, {}),
        ("topk_dice", {}, {"include_background": False}),
        ("pm_dice", {}, {"include_background": False}),
        ("calf", {"branch": "log10_bce"}, {"branch": "log10_bce"}),
        ("calf", {"branch": "fisher"}, {"branch": "fisher"}),
        ("calf", {"branch": "arcsine"}, {"branch": "arcsine"}),
    ]


@settings(max_examples=25, deadline=None)
@given(
    case=edge_cases(scales=(0.5, 3.0)),
    pi=st.floats(0.001, 0.999),
)
def test_two_channel_softmax_equals_sigmoid(case, pi: float) -> None:
    """§0: softmax over logits (0, z) is exactly the sigmoid of z; every loss agrees."""
    z, t, c = case
    z1 = z[:, :1]
    if c == 3:
        t = (t > 0).astype(np.int64)
    z2 = np.concatenate([np.zeros_like(z1), z1], axis=1)
    for name, o1, o2 in _two_channel_pairs(pi):
        a = float(build_loss(name, **o1)(tt(z1), tl(t)))
        b = float(build_loss(name, **o2)(tt(z2), tl(t)))
        assert a == pytest.approx(b, rel=1e-7, abs=1e-9), (name, o1)


@settings(max_examples=25, deadline=None)
@given(case=edge_cases(scales=(0.5, 3.0)))
def test_ignored_voxels_do_not_matter(case) -> None:
    """§0: ignored voxels leave every loss unchanged whatever their logits (and get no
    gradient); top-K never selects them even when they would be the hardest."""
    z, t, c = case
    t = t.copy()
    flat = t.reshape(t.shape[0], -1)
    flat[:, ::4] = IGNORE
    ignored = np.broadcast_to((t == IGNORE)[:, None], z.shape).copy()
    z_other = np.where(ignored, -50.0 * z - 40.0, z)  # confidently wrong there
    for name in ALL_NAMES:
        opts = {**required_options(name, c), "ignore_index": IGNORE}
        if name == "calf":
            opts["branch"] = "bce_dice"
        loss = build_loss(name, **opts)
        x = tt(z).requires_grad_(True)
        a = loss(x, tl(t))
        a.backward()
        b = loss(tt(z_other), tl(t))
        assert float(a.detach()) == pytest.approx(float(b), rel=1e-9, abs=1e-12), name
        assert float(x.grad[torch.as_tensor(ignored)].abs().max()) == 0.0, name
