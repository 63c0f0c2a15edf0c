"""The CPU core's blocked path (one row and ``BLOCK_VOXELS`` columns per block; here 7
voxels, so a row of 36 voxels is 5 full blocks and a 1-voxel tail) against the numpy
references: values and finite-difference gradients of single terms and merged compounds,
binary and two-class, with ignore_index and voxel weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import binary, build_loss

from .conftest import IGNORE, random_case, random_weights, tl, tt
from .test_binary_paths import COMPOUNDS, PRIOR2, VALUE_CASES, _ids, compound_reference_options
from .test_gradients import numeric_grad, pm_dice_frozen

SPATIAL = (3, 4, 3)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binary, "BLOCK_VOXELS", 7)
    assert len(binary._blocks(2, 36, torch.device("cpu"))) == 2 * 6


CASES = list(VALUE_CASES) + [(spec, opts, reference, True) for spec, opts, reference in COMPOUNDS]
COMPOUND_NAMES = {spec for spec, _, _ in COMPOUNDS}


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("mode", ["plain", "ignore+weight"])
@pytest.mark.parametrize(("name", "opts", "reference", "weighted"), CASES, ids=_ids(CASES))
def test_blocked_core_matches_reference(
    name, opts, reference, weighted, mode, c, monkeypatch
) -> None:
    if mode != "plain" and not weighted:
        pytest.skip("computes its own weighting")
    if c == 1 and isinstance(opts.get("alpha"), list):
        pytest.skip("vector alpha needs C >= 2")
    opts = dict(opts)
    if "prior" in opts and c == 1:
        opts["prior"] = PRIOR2[1]
    ref_opts = compound_reference_options(opts) if name in COMPOUND_NAMES else opts
    ignore = IGNORE if mode != "plain" else None
    z, t = random_case(931 + c, n_classes=c, spatial=SPATIAL, fg=0.3, ignore_index=ignore)
    w = random_weights(931, t) if mode != "plain" else None
    kw = {"ignore_index": ignore, **({} if w is None else {"weight": w})}

    x = tt(z).requires_grad_(True)
    loss = build_loss(name, ignore_index=ignore, **opts)
    out = loss(x, tl(t), **({} if w is None else {"weight": tt(w)}))
    out.backward()
    assert out.item() == pytest.approx(reference(z, t, **kw, **ref_opts), rel=1e-9, abs=1e-12)

    if "pm_dice" not in name:
        f = lambda zz: reference(zz, t, **kw, **ref_opts)  # noqa: E731
    elif name == "pm_dice" and w is None and not set(opts) - {"include_background"}:
        # the stop-gradient modulation, frozen (squared, per sample, unweighted only)
        f = pm_dice_frozen(z, t, ignore_index=ignore, **opts)
    else:
        # no finite-difference reference: the one-block path, checked in test_binary_paths
        monkeypatch.setattr(binary, "BLOCK_VOXELS", 1 << 20)
        x1 = tt(z).requires_grad_(True)
        loss(x1, tl(t), **({} if w is None else {"weight": tt(w)})).backward()
        np.testing.assert_allclose(x.grad.numpy(), x1.grad.numpy(), rtol=1e-9, atol=1e-15)
        return
    np.testing.assert_allclose(x.grad.numpy(), numeric_grad(f, z), rtol=1e-5, atol=1e-8)
