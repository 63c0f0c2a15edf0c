"""Patch loader: content, oversampling share, padding, per-patch weights, determinism, resume."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from segbalance.data.augment import AugmentSettings
from segbalance.data.cache import preprocess_dataset
from segbalance.data.loader import PatchLoader, patch_weights

FULL = np.ones((3, 3, 3), dtype=bool)
OFF = AugmentSettings.off()


@pytest.fixture
def data(phantom_dir: Path):
    return preprocess_dataset(phantom_dir)


def _crop(array: np.ndarray, start, size) -> np.ndarray:
    """Independent crop: numpy pad by the patch size, then slice."""
    p = max(size)
    pad = [(0, 0)] * (array.ndim - 3) + [(p, p)] * 3
    padded = np.pad(np.asarray(array), pad)
    return padded[(..., *[slice(s + p, s + p + n) for s, n in zip(start, size, strict=True)])]


def _reference_weights(components: np.ndarray) -> np.ndarray:
    """METHODS §3 by hand: N / ((K + 1) |cc|), clipped to [1, 2e5]."""
    ids, counts = np.unique(components, return_counts=True)
    k = int(np.sum(ids != 0))
    raw = {int(i): components.size / ((k + 1) * c) for i, c in zip(ids, counts, strict=True)}
    out = np.vectorize(lambda i: raw[int(i)])(components)
    return np.clip(out, 1.0, 2e5).astype(np.float32)


def test_batch_layout_and_dtypes(data) -> None:
    loader = PatchLoader(data, patch_size=(16, 24, 16), batch_size=3, with_weights=True)
    inputs, target, weight = loader.batch(0)
    assert inputs.dtype == torch.float32 and inputs.shape == (3, 1, 16, 24, 16)
    assert target.dtype == torch.int64 and target.shape == (3, 1, 16, 24, 16)
    assert weight.dtype == torch.float32 and weight.shape == (3, 1, 16, 24, 16)
    assert len(PatchLoader(data, patch_size=(8, 8, 8)).batch(0)) == 2, "no weight unless requested"


def test_unaugmented_patches_are_crops_with_weights_from_the_global_components(
    data, phantom_dir: Path
) -> None:
    loader = PatchLoader(
        data, patch_size=(16, 20, 24), batch_size=4, augment=OFF, with_weights=True, seed=7
    )
    for index in range(4):
        inputs, target, weight = loader.batch(index)
        for b, plan in enumerate(loader.plan(index)):
            case = data[plan.case]
            label = np.asarray(case.label)
            assert np.array_equal(inputs[b].numpy(), _crop(case.image, plan.start, loader.patch))
            assert np.array_equal(target[b, 0].numpy(), _crop(label, plan.start, loader.patch))
            # components labelled on the FULL volume (scipy, 26-conn), then cropped
            global_cc, _ = ndimage.label(label > 0, structure=FULL)
            expected = _reference_weights(_crop(global_cc, plan.start, loader.patch))
            assert np.allclose(weight[b, 0].numpy(), expected, rtol=1e-6)


def test_foreground_share_and_centring(data) -> None:
    loader = PatchLoader(
        data,
        patch_size=(12, 12, 12),
        batch_size=4,
        augment=OFF,
        oversample_foreground=1 / 3,
        seed=1,
    )
    plans = [p for i in range(30) for p in loader.plan(i)]
    forced = [p for p in plans if p.forced]
    assert len(forced) == 120 // 3  # exactly floor(n p) of the first n patches
    for plan in forced:
        label = np.asarray(data[plan.case].label)
        assert label[plan.voxel] == plan.cls == 1
        offset = np.array(plan.voxel) - np.array(plan.start)
        assert np.all(offset >= 0) and np.all(offset < 12), "the chosen voxel lies in the patch"
    inputs_target = [loader.batch(i)[1] for i in range(30)]
    fg_patch = np.array([bool(t[b].any()) for t in inputs_target for b in range(4)])
    assert fg_patch[[p.forced for p in plans]].all()


@pytest.mark.parametrize(("share", "n_forced"), [(0.0, 0), (1.0, 40), (0.5, 20), (0.25, 10)])
def test_configurable_share(data, share: float, n_forced: int) -> None:
    loader = PatchLoader(
        data, patch_size=(8, 8, 8), batch_size=4, oversample_foreground=share, augment=OFF
    )
    assert sum(p.forced for i in range(10) for p in loader.plan(i)) == n_forced


def test_random_class_among_present_classes(phantom2_dir: Path) -> None:
    data = preprocess_dataset(phantom2_dir)
    loader = PatchLoader(
        data, patch_size=(8, 8, 8), batch_size=4, oversample_foreground=1.0, augment=OFF
    )
    plans = [p for i in range(40) for p in loader.plan(i)]
    counts = np.bincount([p.cls for p in plans], minlength=3)
    assert counts[0] == 0 and counts[1] > 40 and counts[2] > 40
    for plan in plans:
        assert plan.cls in data[plan.case].present_classes()
        assert np.asarray(data[plan.case].label)[plan.voxel] == plan.cls


def test_lesion_mode_picks_lesions_uniformly(data) -> None:
    case = data["phantom_000"]
    _, ids = case.locations(1)
    sizes = np.bincount(ids.astype(int))
    small = {i for i in np.unique(ids) if sizes[i] <= np.median(sizes[np.unique(ids)])}
    share_small = {}
    for mode in ("voxel", "lesion"):
        loader = PatchLoader(
            data,
            cases=["phantom_000"],
            patch_size=(8, 8, 8),
            batch_size=8,
            oversample_foreground=1.0,
            foreground_sampling=mode,
            augment=OFF,
        )
        picked = [int(case.components[p.voxel]) for i in range(60) for p in loader.plan(i)]
        share_small[mode] = np.mean([c in small for c in picked])
    lesion_share = len(small) / len(np.unique(ids))
    assert share_small["lesion"] == pytest.approx(lesion_share, abs=0.08)
    voxel_share = sizes[list(small)].sum() / sizes[1:].sum()
    assert share_small["voxel"] == pytest.approx(voxel_share, abs=0.08)


def test_padding_when_the_volume_is_smaller_than_the_patch(data) -> None:
    loader = PatchLoader(
        data, patch_size=(48, 44, 52), batch_size=2, augment=OFF, with_weights=True
    )
    inputs, target, weight = loader.batch(0)
    for b, plan in enumerate(loader.plan(0)):
        label = np.asarray(data[plan.case].label)
        assert int(target[b].sum()) == int(label.sum()), "the whole volume is inside the patch"
        assert all(s <= 0 for s in plan.start) and all(
            st >= s - p
            for st, s, p in zip(plan.start, data[plan.case].shape, loader.patch, strict=True)
        )
        outside = np.ones(loader.patch, dtype=bool)
        inside = tuple(
            slice(-s, -s + n) for s, n in zip(plan.start, data[plan.case].shape, strict=True)
        )
        outside[inside] = False
        assert not inputs[b, 0].numpy()[outside].any() and not target[b, 0].numpy()[outside].any()
        assert np.all(weight[b, 0].numpy()[outside] == 1.0)


def test_flips_act_on_every_output_and_respect_axes(data) -> None:
    plain = PatchLoader(
        data, patch_size=(16, 16, 16), batch_size=4, augment=OFF, with_weights=True, seed=3
    )
    flipped = PatchLoader(
        data,
        patch_size=(16, 16, 16),
        batch_size=4,
        augment=OFF.with_(flip_prob=1.0, flip_axes=(0,)),
        with_weights=True,
        seed=3,
    )
    for a, b in zip(plain.batch(2), flipped.batch(2), strict=True):
        assert torch.equal(torch.flip(a, dims=(2,)), b)


def test_augmented_weights_follow_the_warped_component_map(data) -> None:
    settings = AugmentSettings(affine_prob=1.0)
    loader = PatchLoader(
        data, patch_size=(16, 16, 16), batch_size=4, augment=settings, with_weights=True, seed=5
    )
    for index in range(3):
        inputs, target, weight = loader.batch(index)
        assert torch.isfinite(inputs).all()
        for b in range(4):
            t, w = target[b, 0].numpy(), weight[b, 0].numpy()
            assert np.all(w[t == 0] == 1.0) or (t > 0).mean() > 0.2
            # every lesion voxel is weighted at least 1, and weights are constant per warped lesion
            assert np.all(w[t > 0] >= 1.0)
            cc, n = ndimage.label(t > 0, structure=FULL)
            for k in range(1, n + 1):
                values = np.unique(w[cc == k])
                assert values.size <= 2, (
                    "one lesion id (two if two global lesions touch after warping)"
                )


def test_determinism_and_seed(data) -> None:
    a = PatchLoader(data, patch_size=(16, 16, 16), batch_size=2, with_weights=True, seed=0)
    b = PatchLoader(data, patch_size=(16, 16, 16), batch_size=2, with_weights=True, seed=0)
    c = PatchLoader(data, patch_size=(16, 16, 16), batch_size=2, with_weights=True, seed=1)
    for x, y in zip(a.batch(5), b.batch(5), strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.batch(5)[0], c.batch(5)[0])


def test_resume_continues_the_same_stream(data) -> None:
    first = PatchLoader(data, patch_size=(12, 12, 12), batch_size=2, batches_per_epoch=4, seed=9)
    seen = list(itertools.islice(iter(first), 3))
    assert first.position == 3 and len(seen) == 3
    state = first.state_dict()
    rest = list(first)  # finishes epoch 0 (batch 3)
    assert len(rest) == 1 and first.epoch == 1
    epoch1 = list(first)
    assert len(epoch1) == 4 and first.position == 8
    resumed = PatchLoader(data, patch_size=(12, 12, 12), batch_size=2, batches_per_epoch=4, seed=9)
    resumed.load_state_dict(state)
    again = list(resumed) + list(resumed)
    for x, y in zip([*rest, *epoch1], again, strict=True):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    with pytest.raises(ValueError, match="seed"):
        PatchLoader(data, patch_size=(12, 12, 12), batch_size=2, seed=1).load_state_dict(state)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(data) -> None:
    serial = PatchLoader(
        data, patch_size=(12, 12, 12), batch_size=2, batches_per_epoch=5, with_weights=True
    )
    parallel = PatchLoader(
        data,
        patch_size=(12, 12, 12),
        batch_size=2,
        batches_per_epoch=5,
        with_weights=True,
        num_workers=2,
    )
    for x, y in zip(list(serial), list(parallel), strict=True):
        for a, b in zip(x, y, strict=True):
            assert torch.equal(a, b)
    assert parallel.position == 5


def test_patch_weights_worked_example_and_ignore() -> None:
    # METHODS §3: 4^3, lesion A = (0,0,0), lesion B = (2,2,2),(3,3,3) (one 26-component)
    comps = np.zeros((4, 4, 4), dtype=np.uint16)
    comps[0, 0, 0] = 1
    comps[2, 2, 2] = comps[3, 3, 3] = 2
    w = patch_weights(comps)
    assert w[0, 0, 0] == pytest.approx(21.3333, abs=1e-4)
    assert w[2, 2, 2] == pytest.approx(10.6667, abs=1e-4) and w[3, 3, 3] == w[2, 2, 2]
    assert w[1, 1, 1] == 1.0 and w.dtype == np.float32
    ignore = np.zeros((4, 4, 4), dtype=bool)
    ignore[1] = True  # 16 ignored voxels: N = 48
    w = patch_weights(comps, ignore)
    assert np.all(w[1] == 0.0)
    assert w[0, 0, 0] == pytest.approx(48 / 3, abs=1e-4)


def test_bad_arguments(data) -> None:
    from segbalance.errors import InputError

    with pytest.raises(ValueError, match="patch_size"):
        PatchLoader(data, patch_size=(8, 8))
    with pytest.raises(ValueError, match="oversample_foreground"):
        PatchLoader(data, patch_size=(8, 8, 8), oversample_foreground=1.5)
    with pytest.raises(ValueError, match="foreground_sampling"):
        PatchLoader(data, patch_size=(8, 8, 8), foreground_sampling="blob")
    with pytest.raises(InputError, match="did you mean"):
        PatchLoader(data, patch_size=(8, 8, 8), cases=["phantom_0"])
