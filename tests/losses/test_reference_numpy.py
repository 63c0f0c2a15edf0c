"""Every loss against the independent float64 numpy references (METHODS §0-§6).

Random continuous logits (no ties for top-K), binary (C=1) and multi-class (C=3),
2D and 3D, with ignore_index and with voxel weights where the loss accepts them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from segbalance.losses import build_loss

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, random_weights, tl, tt, value

# float64 in -> computed in float64 (DESIGN): a float32 pipeline would miss this by ~1e-7
RTOL = 1e-9
SPATIAL = {"2d": (9, 11), "3d": (6, 7, 5)}


def _prior(c: int) -> float | list[float]:
    return 0.05 if c == 1 else [0.9, 0.07, 0.03]


# (id, registry name, options(C) -> dict | None to skip this C, reference, accepts voxel weights)
Case = tuple[str, str, Callable[[int], dict[str, Any] | None], Callable[..., float], bool]
CASES: list[Case] = [
    ("ce", "ce", lambda c: {}, ref.ce, True),
    ("ce_pos_weight", "ce", lambda c: {"pos_weight": 3.0} if c == 1 else None, ref.ce, True),
    (
        "ce_class_weights",
        "ce",
        lambda c: {"class_weights": [0.2, 1.0, 3.0]} if c == 3 else None,
        ref.ce,
        False,
    ),
    ("balanced_ce", "balanced_ce", lambda c: {}, ref.balanced_ce, False),
    ("focal", "focal", lambda c: {}, ref.focal, True),
    ("focal_g0", "focal", lambda c: {"gamma": 0.0}, ref.focal, True),
    ("focal_a25_g15", "focal", lambda c: {"alpha": 0.25, "gamma": 1.5}, ref.focal, True),
    (
        "focal_alpha_vec",
        "focal",
        lambda c: {"alpha": [0.1, 0.6, 0.3]} if c == 3 else None,
        ref.focal,
        True,
    ),
    ("topk_ce", "topk_ce", lambda c: {}, ref.topk_ce, False),
    ("topk_ce_k25", "topk_ce", lambda c: {"k": 25.0}, ref.topk_ce, False),
    ("topk_ce_k100", "topk_ce", lambda c: {"k": 100.0}, ref.topk_ce, False),
    ("la_ce", "la_ce", lambda c: {"prior": _prior(c)}, ref.la_ce, True),
    ("la_ce_tau", "la_ce", lambda c: {"prior": _prior(c), "tau": 0.5}, ref.la_ce, True),
    ("dice", "dice", lambda c: {}, ref.dice, True),
    ("dice_bg", "dice", lambda c: {"include_background": True}, ref.dice, True),
    ("dice_batch", "dice", lambda c: {"batch": True}, ref.dice, True),
    ("dice_sq", "dice", lambda c: {"squared_pred": True}, ref.dice, True),
    (
        "dice_smooth",
        "dice",
        lambda c: {"smooth_nr": 0.0, "smooth_dr": 1.0, "include_background": True},
        ref.dice,
        True,
    ),
    ("gdl", "generalized_dice", lambda c: {}, ref.generalized_dice, True),
    ("gdl_batch", "generalized_dice", lambda c: {"batch": True}, ref.generalized_dice, True),
    (
        "gdl_nobg",
        "generalized_dice",
        lambda c: {"include_background": False} if c == 3 else None,
        ref.generalized_dice,
        True,
    ),
    (
        "gdl_iw",
        "generalized_dice",
        lambda c: {"w_type": "iw", "smooth_nr": 0.0, "smooth_dr": 0.0},
        ref.generalized_dice,
        True,
    ),
    ("tversky", "tversky", lambda c: {}, ref.tversky, True),
    (
        "tversky_ab",
        "tversky",
        lambda c: {"alpha": 0.8, "beta": 0.1, "include_background": True},
        ref.tversky,
        True,
    ),
    ("tversky_batch", "tversky", lambda c: {"batch": True}, ref.tversky, True),
    ("asym", "asym", lambda c: {}, ref.asym, True),
    ("asym_unsq", "asym", lambda c: {"squared": False, "beta": 2.0}, ref.asym, True),
    ("topk_dice", "topk_dice", lambda c: {}, ref.topk_dice, False),
    ("topk_dice_k30", "topk_dice", lambda c: {"k": 30.0}, ref.topk_dice, False),
    (
        "topk_dice_nobg_batch",
        "topk_dice",
        lambda c: {"include_background": False, "batch": True, "k": 20.0},
        ref.topk_dice,
        False,
    ),
    (
        "topk_dice_per_class",
        "topk_dice",
        lambda c: {"selection": "per_class", "k": 20.0},
        ref.topk_dice,
        False,
    ),
    ("pm_dice", "pm_dice", lambda c: {}, ref.pm_dice, True),
    ("pm_dice_g1_unsq", "pm_dice", lambda c: {"gamma": 1.0, "squared": False}, ref.pm_dice, True),
    (
        "pm_dice_nobg_batch",
        "pm_dice",
        lambda c: {"include_background": False, "batch": True},
        ref.pm_dice,
        True,
    ),
    ("dbce_r1", "dbce", lambda c: {"radius": 1.0}, ref.dbce, False),
    ("dbce_default", "dbce", lambda c: {}, ref.dbce, False),
]

MODES = ["plain", "ignore", "weight", "ignore+weight"]


def _params():
    for case_id, name, opts_fn, reference, accepts_w in CASES:
        for c in (1, 3):
            opts = opts_fn(c)
            if opts is None:
                continue
            for dim in ("2d", "3d"):
                for mode in MODES:
                    if "weight" in mode and not accepts_w:
                        continue
                    yield pytest.param(
                        name, opts, reference, c, dim, mode, id=f"{case_id}-C{c}-{dim}-{mode}"
                    )


@pytest.mark.parametrize(("name", "opts", "reference", "c", "dim", "mode"), list(_params()))
def test_against_numpy_reference(name, opts, reference, c, dim, mode) -> None:
    seed = zlib.crc32(f"{name}{sorted(opts.items())}{c}{dim}{mode}".encode())
    ignore = IGNORE if "ignore" in mode else None
    z, t = random_case(seed, n_classes=c, spatial=SPATIAL[dim], ignore_index=ignore)
    w = random_weights(seed, t) if "weight" in mode else None
    kwargs: dict[str, Any] = {}
    if w is not None:
        # both accepted weight layouts: (B, 1, *S) for 3D, (B, *S) for 2D
        kwargs["weight"] = tt(w[:, None] if dim == "3d" else w)
    build_opts = dict(opts) if ignore is None else {**opts, "ignore_index": ignore}
    got = value(build_loss(name, **build_opts), z, t, **kwargs)
    expected = (
        reference(z, t, ignore_index=ignore, weight=w, **opts)
        if w is not None
        else (reference(z, t, ignore_index=ignore, **opts))
    )
    assert got == pytest.approx(expected, rel=RTOL, abs=1e-12)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_adaptive_wce(dim: str) -> None:
    """§1.1: beta from predicted probabilities of the whole batch (binary only)."""
    z, t = random_case(11, n_classes=1, spatial=SPATIAL[dim])
    got = value(build_loss("ce", adaptive_pos_weight=True), z, t)
    assert got == pytest.approx(ref.ce(z, t, adaptive_pos_weight=True), rel=RTOL)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("c", [1, 3])
def test_topk_ce_pool(per_sample: bool, c: int) -> None:
    """§1.7: the default pool is the whole batch; per_sample=True pools each sample."""
    # samples with very different difficulty make the two pools differ
    z, t = random_case(5, n_classes=c, spatial=(6, 7, 5))
    z[1] *= 0.1
    got = value(build_loss("topk_ce", k=15.0, per_sample=per_sample), z, t)
    expected = ref.topk_ce(z, t, k=15.0, per_sample=per_sample)
    other = ref.topk_ce(z, t, k=15.0, per_sample=not per_sample)
    assert abs(expected - other) > 1e-3  # the test can tell the two pools apart
    assert got == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("ignore", [None, IGNORE])
@pytest.mark.parametrize("c", [1, 3])
def test_topk_ce_voxel_weights(ignore: int | None, c: int) -> None:
    """Decisions: topk_ce takes voxel weights (loss times w). Weights increasing in the CE
    keep the ranking of l and of w*l identical, so the selection rule cannot matter."""
    z, t = random_case(7, n_classes=c, spatial=(6, 7, 5), ignore_index=ignore)
    ell = ref.voxel_ce(z, t, ignore)
    w = 1.0 + ell
    got = value(build_loss("topk_ce", k=20.0, ignore_index=ignore), z, t, weight=tt(w))
    assert got == pytest.approx(ref.topk_ce(z, t, k=20.0, ignore_index=ignore, weight=w), rel=RTOL)


@pytest.mark.parametrize("name", ["ce", "dice", "focal", "topk_dice", "generalized_dice"])
def test_target_with_channel_axis(name: str) -> None:
    """§0: target (B, 1, *S) equals target (B, *S)."""
    z, t = random_case(13, n_classes=3, spatial=(6, 7, 5))
    loss = build_loss(name)
    a = float(loss(tt(z), tl(t)))
    b = float(loss(tt(z), tl(t[:, None])))
    assert a == pytest.approx(b, rel=1e-12)
    assert a == pytest.approx(
        {
            "ce": ref.ce,
            "dice": ref.dice,
            "focal": ref.focal,
            "topk_dice": ref.topk_dice,
            "generalized_dice": ref.generalized_dice,
        }[name](z, t),
        rel=RTOL,
    )


@pytest.mark.parametrize("label_dtype", [torch.int32, torch.uint8, torch.float32])
def test_other_label_dtypes(label_dtype: torch.dtype) -> None:
    """Integer labels of any integer dtype (and binary 0/1 floats) give the same loss."""
    z, t = random_case(17, n_classes=1, spatial=(9, 11))
    loss = build_loss("ce+dice")
    got = float(loss(tt(z), torch.as_tensor(t).to(label_dtype)))
    assert got == pytest.approx(ref.ce(z, t) + ref.dice(z, t), rel=RTOL)


@pytest.mark.parametrize(
    ("in_dtype", "rtol"), [(torch.float32, 1e-4), (torch.float16, 2e-4), (torch.bfloat16, 2e-4)]
)
@pytest.mark.parametrize("name", ["ce", "dice", "focal", "tversky", "topk_dice", "balanced"])
def test_low_precision_inputs_return_float32(name: str, in_dtype: torch.dtype, rtol: float) -> None:
    """§0: inputs below float64 are upcast to float32 and the result is float32; the value is
    that of the (rounded) input computed accurately."""
    z, t = random_case(19, n_classes=3, spatial=(6, 7, 5))
    zt = torch.as_tensor(z).to(in_dtype)
    opts = {"prior": [0.9, 0.07, 0.03]} if name == "balanced" else {}
    out = build_loss(name, **opts)(zt, tl(t))
    assert out.dtype == torch.float32 and out.ndim == 0
    z_rounded = zt.double().numpy()
    refs = {
        "ce": lambda: ref.ce(z_rounded, t),
        "dice": lambda: ref.dice(z_rounded, t),
        "focal": lambda: ref.focal(z_rounded, t),
        "tversky": lambda: ref.tversky(z_rounded, t),
        "topk_dice": lambda: ref.topk_dice(z_rounded, t),
        "balanced": lambda: (
            ref.la_ce(z_rounded, t, prior=[0.9, 0.07, 0.03]) + ref.dice(z_rounded, t)
        ),
    }
    assert float(out) == pytest.approx(refs[name](), rel=rtol)


def test_float64_input_returns_float64() -> None:
    z, t = random_case(23, n_classes=1, spatial=(9, 11))
    out = build_loss("ce+dice")(tt(z), tl(t))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("in_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "name", ["ce", "dice", "tversky", "generalized_dice", "pm_dice", "topk_dice", "focal"]
)
def test_large_low_precision_volume(name: str, in_dtype: torch.dtype) -> None:
    """§0: 64^3 voxels: a half-precision sum of probabilities (> 65504) would overflow in fp16
    and lose digits in bf16; the upcast keeps the float32 result accurate."""
    rng = np.random.default_rng(29)
    z = rng.normal(0.0, 1.0, size=(1, 1, 64, 64, 64))
    t = (rng.random((1, 64, 64, 64)) < 0.3).astype(np.int64)
    zt = torch.as_tensor(z).to(in_dtype)
    out = build_loss(name)(zt, tl(t))
    assert out.dtype == torch.float32
    z_rounded = zt.double().numpy()
    expected = {
        "ce": ref.ce, "dice": ref.dice, "tversky": ref.tversky,
        "generalized_dice": ref.generalized_dice, "pm_dice": ref.pm_dice,
        "topk_dice": ref.topk_dice, "focal": ref.focal,
    }[name](z_rounded, t)  # fmt: skip
    assert float(out) == pytest.approx(expected, rel=1e-4)
