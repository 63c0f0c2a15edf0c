"""The top-k region of the binary core (top-K Dice selected in the block pass): values
against the numpy references and gradients against autograd of the formula with the mask
chosen by a stable numpy argsort, with rows long enough for the bracketing sample (its
size made small here), several blocks per row, and each way the selection can go: dense
and sparse parts, a misjudging sample (fallback rows), massive ties, ignored voxels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segbalance.losses import binary, binary_select, build_loss
from segbalance.losses.binary_select import TopRegion

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, tl, tt

SPATIAL = (20, 20, 20)  # 8000 voxels per row


@pytest.fixture(autouse=True)
def small_sample_and_blocks(monkeypatch: pytest.MonkeyPatch) -> list[TopRegion]:
    """Sample ~1600 voxels of a row (stride 5), blocks of 3000 voxels; records the regions."""
    monkeypatch.setattr(binary_select, "_SAMPLE", 1500)
    monkeypatch.setattr(binary, "BLOCK_VOXELS", 3000)
    seen: list[TopRegion] = []
    finish = TopRegion.finish

    def recording(self, row_v, y):
        finish(self, row_v, y)
        seen.append(self)

    monkeypatch.setattr(TopRegion, "finish", recording)
    return seen


def _mask(z: np.ndarray, t: np.ndarray, k: float, ignore: int | None) -> np.ndarray:
    """(B, *S) 0/1: per sample the floor(k% N_valid) largest voxel CEs, ties lowest index."""
    ell = ref.voxel_ce(z, t, ignore)
    valid = ref.valid_mask(t, ignore)
    sel = np.zeros(t.shape)
    for b in range(t.shape[0]):
        ok = valid[b].ravel() > 0
        kk = max(1, math.floor(k * ok.sum() / 100)) if ok.any() else 0
        order = np.argsort(-np.where(ok, ell[b].ravel(), -np.inf), kind="stable")[:kk]
        sel[b].reshape(-1)[order] = 1
    return sel


def _autograd_reference(z, t, *, k, include_background, batch, ignore, with_ce) -> np.ndarray:
    """d loss / d z by autograd of the plain formula (mask fixed from numpy)."""
    x = tt(z).requires_grad_(True)
    sel = torch.as_tensor(_mask(z, t, k, ignore)).unsqueeze(1)
    tc = torch.as_tensor(ref.clean_labels(t, ignore))
    valid = torch.as_tensor(ref.valid_mask(t, ignore)).double()
    if z.shape[1] == 1:
        p, y = torch.sigmoid(x), tc.unsqueeze(1).double()
        ell = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")[:, 0]
    else:
        p = torch.softmax(x, 1)
        y = torch.nn.functional.one_hot(tc, 2).movedim(-1, 1).double()
        ell = torch.nn.functional.cross_entropy(x, tc, reduction="none")
        if not include_background:
            p, y = p[:, 1:], y[:, 1:]
    axes = (0, 2, 3, 4) if batch else (2, 3, 4)
    dice = (2 * (sel * p * y).sum(axes) + 1e-5) / ((sel * (p * p + y)).sum(axes) + 1e-5)
    loss = 1 - dice.mean()
    if with_ce:
        loss = loss + (ell * valid).sum() / valid.sum()
    loss.backward()
    return x.grad.numpy()


def _check(
    z, t, *, name, seen, k=25.0, include_background=True, batch=False, ignore=None, expected=None
):
    opts = {"k": k, "include_background": include_background, "batch": batch}
    x = tt(z).requires_grad_(True)
    out = build_loss(name, ignore_index=ignore, **opts)(x, tl(t))
    out.backward()
    if expected is None:
        expected = ref.topk_dice(z, t, ignore_index=ignore, **opts)
    if name == "ce+topk_dice":
        expected += ref.ce(z, t, ignore_index=ignore)
    assert out.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    grad = _autograd_reference(z, t, ignore=ignore, with_ce=name != "topk_dice", **opts)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-7, atol=1e-14)
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("numpy_on_cpu", [True, False], ids=["numpy", "torch"])
@pytest.mark.parametrize("name", ["topk_dice", "ce+topk_dice"])
@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_dense_and_sparse_parts_match_the_reference(
    c, name, ignore, numpy_on_cpu, small_sample_and_blocks, monkeypatch
) -> None:
    monkeypatch.setattr(binary_select, "NUMPY_ON_CPU", numpy_on_cpu)
    z, t = random_case(41 + c, n_classes=c, spatial=SPATIAL, fg=0.2, ignore_index=ignore)
    top = _check(z, t, name=name, seen=small_sample_and_blocks, ignore=ignore)
    # both parts are exercised: most of the region is dense, the band's top is sparse
    assert top.fallback == []
    counts = np.array(top.counts)
    assert np.all(top._dense > counts // 2) and np.all(top._dense < counts)
    assert top.flat.numel() == int((counts - top._dense).sum())


@pytest.mark.parametrize("c", [1, 2])
def test_options_background_and_batch(c, small_sample_and_blocks) -> None:
    z, t = random_case(52, n_classes=c, spatial=SPATIAL, fg=0.1)
    _check(
        z,
        t,
        name="ce+topk_dice",
        seen=small_sample_and_blocks,
        k=10.0,
        include_background=False,
        batch=True,
    )


@pytest.mark.parametrize("c", [1, 2])
def test_a_misjudging_sample_falls_back_to_the_exact_selection(c, small_sample_and_blocks) -> None:
    z, t = random_case(63 + c, n_classes=c, spatial=SPATIAL, fg=0.2)
    # at the sampled voxels (stride 5) a confident correct background: their v is -40, so
    # the sample puts the k-th largest v far too low (everything else is above "hi")
    flat_z, flat_t = z.reshape(2, c, -1), t.reshape(2, -1)
    flat_t[0, ::5] = 0
    flat_z[0, -1, ::5] = -40.0
    if c == 2:
        flat_z[0, 0, ::5] = 0.0
    top = _check(z, t, name="ce+topk_dice", seen=small_sample_and_blocks)
    assert top.fallback == [0]
    assert not bool(top.mask[0].any())


@pytest.mark.parametrize("c", [1, 2])
def test_massive_ties_keep_the_lowest_indices(c, small_sample_and_blocks) -> None:
    z, t = random_case(74, n_classes=c, spatial=SPATIAL, fg=0.2)
    z = np.round(z * 2) / 2  # a few distinct logits: hundreds of voxels tie at the threshold
    _check(z, t, name="ce+topk_dice", seen=small_sample_and_blocks)


@pytest.mark.parametrize("c", [1, 2])
def test_second_backward_and_float32_agree(c, small_sample_and_blocks) -> None:
    z, t = random_case(85, n_classes=c, spatial=SPATIAL, fg=0.2)
    loss = build_loss("ce+topk_dice")
    x = tt(z, torch.float32).requires_grad_(True)
    out = loss(x, tl(t))
    (g1,) = torch.autograd.grad(out, x, retain_graph=True)
    (g2,) = torch.autograd.grad(out, x)
    np.testing.assert_array_equal(g1.numpy(), g2.numpy())
    expected = ref.ce(z, t) + ref.topk_dice(z, t)
    assert out.item() == pytest.approx(expected, rel=1e-5)
    grad = _autograd_reference(
        z, t, k=10.0, include_background=True, batch=False, ignore=None, with_ce=True
    )
    # float32, p read off the CE gradient: absolute error at the float spacing
    np.testing.assert_allclose(g1.numpy(), grad, rtol=1e-4, atol=1e-9)


def test_rows_without_valid_voxels_select_nothing(small_sample_and_blocks) -> None:
    z, t = random_case(96, n_classes=2, spatial=SPATIAL, fg=0.2, ignore_index=IGNORE)
    t[1] = IGNORE
    # the empty sample's Dice is smooth / smooth = 1 on both channels: half the mean
    first = ref.topk_dice(z[:1], t[:1], ignore_index=IGNORE, k=25.0)
    top = _check(
        z, t, name="ce+topk_dice", seen=small_sample_and_blocks, ignore=IGNORE, expected=first / 2
    )
    assert top.counts[1] == 0 and int(top._dense[1]) == 0
    assert not bool((top.rows == 1).any())
