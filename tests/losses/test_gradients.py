"""Autograd gradients against central finite differences of the numpy references (float64).

Checks what the value tests cannot: stop-gradients (pm_dice's modulation, top-K selection)
and gradients that must flow (adaptive WCE's beta is not detached, METHODS §1.1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from segbalance.losses import build_loss

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, random_weights, tl, tt

EPS = 1e-6


def numeric_grad(f: Callable[[np.ndarray], float], z: np.ndarray) -> np.ndarray:
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += EPS
        zm[idx] -= EPS
        g[idx] = (f(zp) - f(zm)) / (2 * EPS)
    return g


def autograd(name: str, opts: dict, z: np.ndarray, t: np.ndarray, w=None) -> np.ndarray:
    x = tt(z).requires_grad_(True)
    kw = {} if w is None else {"weight": tt(w)}
    build_loss(name, **opts)(x, tl(t), **kw).backward()
    return x.grad.numpy()


def pm_dice_frozen(z0: np.ndarray, t: np.ndarray, **opts) -> Callable[[np.ndarray], float]:
    """pm_dice with the modulation m = |y - sg(p)|^gamma frozen at z0 (stop-gradient, §5)."""
    gamma = opts.get("gamma", 2.0)
    ignore = opts.get("ignore_index")
    p0, y, msk = ref.probs_and_onehot(z0, t, ignore)
    mod = np.abs(y - p0) ** gamma * msk[:, None]
    if z0.shape[1] > 1 and not opts.get("include_background", True):
        mod = mod[:, 1:]

    def f(z: np.ndarray) -> float:
        p, yy, _ = ref.probs_and_onehot(z, t, ignore)
        if z.shape[1] > 1 and not opts.get("include_background", True):
            p, yy = p[:, 1:], yy[:, 1:]
        num = 2 * (mod * yy * p).sum(axis=tuple(range(2, z.ndim))) + 1e-5
        den = (mod * (yy**2 + p**2)).sum(axis=tuple(range(2, z.ndim))) + 1e-5
        return float(1 - np.mean(num / den))

    return f


CASES = [
    ("ce", {}, ref.ce),
    ("ce", {"adaptive_pos_weight": True}, ref.ce),
    ("balanced_ce", {}, ref.balanced_ce),
    ("dbce", {"radius": 1.0}, ref.dbce),
    ("focal", {"alpha": 0.25}, ref.focal),
    ("topk_ce", {"k": 30.0}, ref.topk_ce),
    ("la_ce", {"prior": "auto"}, ref.la_ce),
    ("dice", {}, ref.dice),
    ("dice", {"squared_pred": True, "include_background": True}, ref.dice),
    ("generalized_dice", {}, ref.generalized_dice),
    ("tversky", {}, ref.tversky),
    ("asym", {}, ref.asym),
    ("topk_dice", {"k": 30.0}, ref.topk_dice),
    ("pm_dice", {}, None),
    ("calf", {"branch": "fisher"}, None),
    ("calf", {"branch": "bce_dice"}, None),
]


def _params():
    for name, opts, reference in CASES:
        # adaptive WCE is binary only (§1.1); CALF multi-class is checked by value in test_calf
        binary_only = name == "calf" or opts.get("adaptive_pos_weight")
        for c in (1,) if binary_only else (1, 3):
            label = "-".join(f"{k}={v}" for k, v in opts.items())
            yield pytest.param(name, opts, reference, c, id=f"{name}-{label}-C{c}")


@pytest.mark.parametrize(("name", "opts", "reference", "c"), list(_params()))
def test_gradient_matches_finite_differences(name, opts, reference, c) -> None:
    z, t = random_case(501 + c, n_classes=c, spatial=(3, 4, 2), fg=0.3, logit_scale=1.5)
    opts = dict(opts)
    if opts.get("prior") == "auto":
        opts["prior"] = 0.1 if c == 1 else [0.7, 0.2, 0.1]
    if name == "pm_dice":
        f = pm_dice_frozen(z, t)
    elif name == "calf":
        f = lambda zz: ref.calf(zz, t, branch=opts["branch"])  # noqa: E731
    else:
        f = lambda zz: reference(zz, t, **opts)  # noqa: E731
    np.testing.assert_allclose(autograd(name, opts, z, t), numeric_grad(f, z), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("name", "reference"),
    [("ce", ref.ce), ("dice", ref.dice), ("tversky", ref.tversky), ("generalized_dice",
     ref.generalized_dice), ("focal", ref.focal), ("asym", ref.asym)],
)  # fmt: skip
def test_gradient_with_ignore_and_weights(name, reference) -> None:
    z, t = random_case(509, n_classes=3, spatial=(3, 4, 2), fg=0.4, ignore_index=IGNORE)
    w = random_weights(509, t)
    f = lambda zz: reference(zz, t, ignore_index=IGNORE, weight=w)  # noqa: E731
    got = autograd(name, {"ignore_index": IGNORE}, z, t, w)
    np.testing.assert_allclose(got, numeric_grad(f, z), rtol=1e-5, atol=1e-8)


def test_pm_dice_modulation_is_detached() -> None:
    """The stop-gradient matters: the fully differentiated reference gives another gradient."""
    z, t = random_case(511, n_classes=1, spatial=(3, 4, 2), fg=0.3)
    got = autograd("pm_dice", {}, z, t)
    full = numeric_grad(lambda zz: ref.pm_dice(zz, t), z)
    assert not np.allclose(got, full, rtol=1e-3, atol=1e-6)


def test_adaptive_wce_beta_is_not_detached() -> None:
    """§1.1: beta depends on sigma(z) and is not detached; a detached beta differs."""
    z, t = random_case(513, n_classes=1, spatial=(3, 4, 2), fg=0.3)
    got = autograd("ce", {"adaptive_pos_weight": True}, z, t)
    s = ref.sigmoid(z).sum()
    beta = (z.size - s) / s
    frozen = numeric_grad(lambda zz: ref.ce(zz, t, pos_weight=beta), z)
    assert not np.allclose(got, frozen, rtol=1e-3, atol=1e-6)


COMPOUNDS = [
    ("dice+ce", lambda z, t, **kw: ref.dice(z, t, **kw) + ref.ce(z, t, **kw)),
    (
        "0.3*ce+2*dice+tversky",
        lambda z, t, **kw: 0.3 * ref.ce(z, t, **kw) + 2 * ref.dice(z, t, **kw)
        + ref.tversky(z, t, **kw),
    ),
    (
        "generalized_dice+0.5*asym+focal",
        lambda z, t, **kw: ref.generalized_dice(z, t, **kw) + 0.5 * ref.asym(z, t, **kw)
        + ref.focal(z, t, **kw),
    ),
]  # fmt: skip


@pytest.mark.parametrize("mode", ["plain", "ignore+weight"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(("spec", "reference"), COMPOUNDS, ids=[s for s, _ in COMPOUNDS])
def test_compound_gradient_matches_finite_differences(spec, reference, c, mode) -> None:
    """Compounds share activations and region sums (fused backward): check the whole gradient."""
    ignore = IGNORE if mode != "plain" else None
    z, t = random_case(515 + c, n_classes=c, spatial=(3, 4, 2), fg=0.4, ignore_index=ignore)
    w = random_weights(515, t) if mode != "plain" else None
    kw = {"ignore_index": ignore, "weight": w}
    got = autograd(spec, {"ignore_index": ignore}, z, t, w)
    expected = numeric_grad(lambda zz: reference(zz, t, **kw), z)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)


def _all_names_with_options(c: int) -> list[tuple[str, dict]]:
    from segbalance.losses import available_losses

    out = []
    for name in available_losses():
        opts: dict = {}
        if name in ("la_ce", "balanced"):
            opts["prior"] = 0.1 if c == 1 else [0.7, 0.2, 0.1]
        if name == "calf":
            opts["branch"] = "bce_dice"
        out.append((name, opts))
    return out


@pytest.mark.parametrize("c", [1, 3])
def test_upstream_gradient_is_respected(c: int) -> None:
    """backward of s * L gives s times the gradient of L (custom backwards use grad_output),
    also for compounds of fused terms."""
    z, t = random_case(519, n_classes=c, spatial=(4, 5, 3))
    specs = [*_all_names_with_options(c), ("dice+ce", {}), ("0.5*tversky+generalized_dice", {})]
    for name, opts in specs:
        loss = build_loss(name, **opts)
        x1, x2 = tt(z).requires_grad_(True), tt(z).requires_grad_(True)
        loss(x1, tl(t)).backward()
        (-2.5 * loss(x2, tl(t))).backward()
        np.testing.assert_allclose(
            x2.grad.numpy(), -2.5 * x1.grad.numpy(), rtol=1e-12, err_msg=name
        )


def test_float32_compound_gradient() -> None:
    """The float32 path (the training dtype) agrees with float64 finite differences."""
    z, t = random_case(521, n_classes=3, spatial=(3, 4, 2), fg=0.4)
    x = tt(z, torch.float32).requires_grad_(True)
    build_loss("dice+ce+tversky")(x, tl(t)).backward()
    assert x.grad.dtype == torch.float32
    f = lambda zz: ref.dice(zz, t) + ref.ce(zz, t) + ref.tversky(zz, t)  # noqa: E731
    np.testing.assert_allclose(x.grad.double().numpy(), numeric_grad(f, z), rtol=1e-4, atol=1e-6)


def test_no_grad_and_plain_tensors() -> None:
    """Validation use: logits without requires_grad and under no_grad give the same value."""
    z, t = random_case(523, n_classes=3)
    loss = build_loss("dice+ce")
    with torch.no_grad():
        a = float(loss(tt(z), tl(t)))
    b = float(loss(tt(z), tl(t)))
    assert a == b == pytest.approx(ref.dice(z, t) + ref.ce(z, t), rel=1e-9)
