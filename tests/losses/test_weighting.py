"""inverse_lesion_weights (METHODS §3, DESIGN Decisions) against scipy labelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segbalance.losses import inverse_lesion_weights

from . import _numpy_ref as ref


def _random_labels(seed: int, shape: tuple[int, ...], fg: float, n_classes: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = rng.integers(1, n_classes, size=shape) * (rng.random(shape) < fg)
    return lab.astype(np.int64)


@pytest.mark.parametrize("shape", [(12, 13), (40, 37), (9, 10, 11), (16, 16, 16)])
@pytest.mark.parametrize("fg", [0.02, 0.15])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_matches_scipy_reference(shape, fg, n_classes) -> None:
    labels = _random_labels(sum(shape) + int(fg * 100), shape, fg, n_classes)
    w = inverse_lesion_weights(labels)
    assert isinstance(w, np.ndarray) and w.dtype == np.float32 and w.shape == shape
    np.testing.assert_allclose(w, ref.inverse_lesion_weights(labels), rtol=1e-6)


def test_torch_in_torch_out() -> None:
    labels = _random_labels(1, (9, 10, 11), 0.1)
    w = inverse_lesion_weights(torch.as_tensor(labels))
    assert isinstance(w, torch.Tensor) and w.dtype == torch.float32
    assert w.shape == labels.shape and w.device == torch.device("cpu")
    np.testing.assert_allclose(w.numpy(), ref.inverse_lesion_weights(labels), rtol=1e-6)


@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize("shape", [(3, 12, 13), (2, 9, 10, 11)])
def test_batched_is_per_case(as_torch: bool, shape: tuple[int, ...]) -> None:
    labels = _random_labels(2, shape, 0.08)
    labels[1] = 0  # an empty case in the batch: all ones
    x = torch.as_tensor(labels) if as_torch else labels
    w = inverse_lesion_weights(x, batched=True)
    w = w.numpy() if as_torch else w
    assert w.shape == shape and w.dtype == np.float32
    expected = np.stack([ref.inverse_lesion_weights(labels[b]) for b in range(shape[0])])
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    np.testing.assert_array_equal(w[1], 1.0)


def test_batched_differs_from_unbatched() -> None:
    """The batch axis is not a spatial axis: lesions in different cases are not merged."""
    labels = np.zeros((2, 6, 6), np.int64)
    labels[0, 2, 2] = labels[1, 2, 2] = 1  # same place in both cases
    w = inverse_lesion_weights(labels, batched=True)
    assert w[0, 2, 2] == pytest.approx(36 / 2)  # N=36 per case, K=1
    w3d = inverse_lesion_weights(labels)  # read as one 3D volume: one 2-voxel lesion
    assert w3d[0, 2, 2] == pytest.approx(72 / (2 * 2))


def test_2d_uses_8_connectivity() -> None:
    labels = np.zeros((5, 5), np.int64)
    labels[0, 0] = labels[1, 1] = 1  # diagonal neighbours: one lesion
    labels[3, 4] = 1  # a second lesion
    w = inverse_lesion_weights(labels)
    assert w[0, 0] == pytest.approx(25 / (3 * 2)) and w[1, 1] == pytest.approx(25 / (3 * 2))
    assert w[3, 4] == pytest.approx(25 / 3)


def test_3d_uses_26_connectivity() -> None:
    labels = np.zeros((4, 4, 4), np.int64)
    labels[0, 0, 0] = labels[1, 1, 1] = 1  # corner-diagonal: one lesion under 26-conn
    w = inverse_lesion_weights(labels)
    assert w[0, 0, 0] == pytest.approx(64 / (2 * 2)) and w[1, 1, 1] == pytest.approx(16.0)


def test_multiclass_union_mask() -> None:
    """§3: lesion mask = union of all foreground classes, so touching classes merge."""
    labels = np.zeros((6, 6, 6), np.int64)
    labels[1, 1, 1], labels[1, 1, 2] = 1, 2
    labels[4, 4, 4] = 3
    w = inverse_lesion_weights(labels)
    assert w[1, 1, 1] == pytest.approx(216 / (3 * 2)) and w[1, 1, 2] == pytest.approx(36.0)
    assert w[4, 4, 4] == pytest.approx(72.0)


def test_empty_and_full() -> None:
    """§3: empty patch K = 0, all weights 1; one lesion covering everything: N/(2N) -> 1."""
    np.testing.assert_array_equal(inverse_lesion_weights(np.zeros((5, 6, 7), np.int64)), 1.0)
    np.testing.assert_array_equal(inverse_lesion_weights(np.ones((5, 6, 7), np.int64)), 1.0)


def test_upper_clip() -> None:
    """§3: weights are clipped at 2e5 (one voxel in a 1000 x 1000 image: raw 5e5)."""
    labels = np.zeros((1000, 1000), np.int64)
    labels[500, 500] = 1
    w = inverse_lesion_weights(labels)
    assert w[500, 500] == pytest.approx(2e5)
    assert w[0, 0] == 1.0


def test_ignored_voxels() -> None:
    """Ignored voxels get weight 0, are background for labelling (they do not bridge lesions)."""
    labels = np.zeros((1, 40), np.int64)  # large enough that no lesion weight is clipped
    labels[0, 2:4] = 1  # lesion A (2 voxels)
    labels[0, 4] = 255  # ignored voxel between A and B
    labels[0, 5:9] = 1  # lesion B (4 voxels)
    w = inverse_lesion_weights(labels, ignore_index=255)
    assert w[0, 4] == 0.0
    assert w[0, 2] == pytest.approx(2 * w[0, 5])  # two lesions, equal totals 2 wA = 4 wB
    assert w[0, 5] > 1.0
    np.testing.assert_array_equal(w[0, [0, 1, *range(9, 40)]], 1.0)
    w_t = inverse_lesion_weights(torch.as_tensor(labels), ignore_index=255)
    np.testing.assert_array_equal(w_t.numpy(), w)


@st.composite
def sparse_volumes(draw):
    dim = draw(st.sampled_from([2, 3]))
    shape = (24, 24) if dim == 2 else (10, 11, 12)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blobs = rng.random(shape) < draw(st.sampled_from([0.005, 0.02, 0.05]))
    if draw(st.booleans()):  # grow some blobs into multi-voxel lesions
        blobs = ndimage.binary_dilation(blobs, iterations=1) & (rng.random(shape) < 0.6)
    return blobs.astype(np.int64) * rng.integers(1, 3, size=shape)


@settings(max_examples=40, deadline=None)
@given(labels=sparse_volumes())
def test_every_lesion_gets_the_same_total_weight(labels: np.ndarray) -> None:
    """§3: without clipping each lesion's weights sum to N / (K + 1); background is 1."""
    structure = np.ones((3,) * labels.ndim, bool)
    comp, k = ndimage.label(labels > 0, structure=structure)
    n = labels.size
    sizes = np.bincount(comp.ravel(), minlength=k + 1)
    assume(k > 0 and sizes[1:].max() <= n / (k + 1))  # no lesion clipped at 1
    assume(sizes[0] > n / (k + 1))  # background large: raw weight < 1
    w = inverse_lesion_weights(labels).astype(np.float64)
    totals = ndimage.sum(w, comp, index=np.arange(1, k + 1))
    np.testing.assert_allclose(totals, n / (k + 1), rtol=1e-5)
    np.testing.assert_array_equal(w[comp == 0], 1.0)
    assert (w >= 1.0).all()


@pytest.mark.parametrize("kind", ["bool", "bool-strided", "int16", "float-mask"])
def test_label_components_matches_scipy_for_any_mask_layout(kind: str) -> None:
    """A bool mask is labelled through its uint8 view: strided and non-bool masks too."""
    from segbalance.stats import label_components

    rng = np.random.default_rng(23)
    base = rng.random((14, 30, 12)) < 0.2
    mask = {
        "bool": base,
        "bool-strided": base[:, ::2, ::-1],
        "int16": base.astype(np.int16) * 7,
        "float-mask": base.astype(np.float32),
    }[kind]
    labels, n = label_components(mask)
    expected, n_expected = ndimage.label(mask != 0, structure=np.ones((3, 3, 3)))
    assert n == n_expected
    # the same partition: each scipy component is exactly one of ours
    pairs = np.unique(np.stack([labels.ravel(), expected.ravel()]), axis=1)
    assert pairs.shape[1] == n + 1 and len(set(pairs[0])) == len(set(pairs[1])) == n + 1
