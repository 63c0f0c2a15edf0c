"""zoom_out_zoom_in and its ROI rule, checked by hand with a pointwise stand-in model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from segbalance.models import roi_from_mask, zoom_out_zoom_in

from ._helpers import TINY, tiny_segvol

WINDOW = (4, 8, 8)


def test_roi_by_hand() -> None:
    mask = torch.zeros(10, 20, 30, dtype=torch.bool)
    mask[0, 10, 29] = True
    # axis 0: [0, 0] grown to 4 -> starts at -1, shifted to [0, 4)
    # axis 1: [10, 10] grown to 8 -> [7, 15); axis 2: [29, 29] -> [26, 34) shifted to [22, 30)
    assert roi_from_mask(mask, WINDOW) == (slice(0, 4), slice(7, 15), slice(22, 30))
    mask[:] = False
    mask[1, 2, 3] = mask[8, 18, 25] = True  # extents 8, 17, 23 >= window: the box itself
    assert roi_from_mask(mask, WINDOW) == (slice(1, 9), slice(2, 19), slice(3, 26))
    mask[:] = False
    mask[4, 5:8, 10] = True  # axis 1: extent 3 grown to 8: 2 voxels before, 3 after
    assert roi_from_mask(mask, WINDOW)[1] == slice(3, 11)
    small = torch.zeros(3, 5, 5, dtype=torch.bool)
    small[1, 1, 1] = True  # volume smaller than the window: the whole volume
    assert roi_from_mask(small, WINDOW) == (slice(0, 3), slice(0, 5), slice(0, 5))
    assert roi_from_mask(torch.zeros(6, 6, 6, dtype=torch.bool), WINDOW) is None


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_roi_properties(data: st.DataObject) -> None:
    shape = data.draw(st.tuples(*[st.integers(1, 12)] * 3))
    window = data.draw(st.tuples(*[st.integers(1, 8)] * 3))
    points = data.draw(
        st.lists(st.tuples(*[st.integers(0, s - 1) for s in shape]), min_size=1, max_size=4)
    )
    mask = torch.zeros(shape, dtype=torch.bool)
    for p in points:
        mask[p] = True
    roi = roi_from_mask(mask, window)
    for axis, sl in enumerate(roi):
        lo = min(p[axis] for p in points)
        hi = max(p[axis] for p in points)
        assert 0 <= sl.start <= lo and hi < sl.stop <= shape[axis]
        assert sl.stop - sl.start == max(hi - lo + 1, min(window[axis], shape[axis]))


class Pointwise(nn.Module):
    """logits = 10 (x - 0.5) (+ 100 (label - 0.5) when label prompts are on); records calls."""

    def __init__(self, with_label: bool = False) -> None:
        super().__init__()
        self.img_size = WINDOW
        self.wants_label_prompts = with_label
        self.calls = 0

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        assert tuple(x.shape[2:]) == WINDOW  # SegVol accepts nothing else
        self.calls += 1
        out = 10 * (x - 0.5)
        if self.wants_label_prompts:
            assert label is not None and label.shape == x.shape
            out = out + 100 * (label - 0.5)
        return out


def _pointwise(volume: np.ndarray) -> np.ndarray:
    return 10 * (volume - 0.5)


def _coarse_by_hand(volume: np.ndarray) -> np.ndarray:
    # Halving with nearest-exact samples index 2i + 1; nearest upsampling repeats each twice.
    idx = [2 * (np.arange(n) // 2) + 1 for n in volume.shape]
    return volume[np.ix_(*idx)]


def _volume(*voxels: tuple[int, int, int]) -> np.ndarray:
    volume = np.zeros((8, 16, 16), dtype=np.float32)
    for v in voxels:
        volume[v] = 1.0
    return volume


def test_zoom_in_replaces_the_roi_by_hand() -> None:
    # A at odd indices (seen by the zoom-out), B at even ones inside A's ROI, C outside it.
    a, b, c = (3, 5, 7), (4, 8, 4), (6, 12, 12)
    volume = _volume(a, b, c)
    model = Pointwise()
    out = zoom_out_zoom_in(model, torch.from_numpy(volume)[None])
    expected = _pointwise(_coarse_by_hand(volume))
    # Coarse mask = A's 2x2x2 block (2..3, 4..5, 6..7) -> ROI grown to the window:
    roi = (slice(1, 5), slice(1, 9), slice(3, 11))
    expected[roi] = _pointwise(volume[roi])
    assert out.shape == (1, 8, 16, 16)
    np.testing.assert_array_equal(out[0].numpy(), expected)
    assert out[0][b] > 0 and out[0][c] < 0 and model.calls == 2


def test_empty_coarse_mask_keeps_the_zoom_out() -> None:
    volume = _volume((4, 8, 4), (6, 12, 12))  # even indices only: invisible when zoomed out
    model = Pointwise()
    out = zoom_out_zoom_in(model, torch.from_numpy(volume)[None])
    np.testing.assert_array_equal(out[0].numpy(), _pointwise(_coarse_by_hand(volume)))
    assert model.calls == 1 and (out < 0).all()


def test_sliding_windows_cover_a_large_roi_with_overlap() -> None:
    volume = _volume((1, 1, 1), (7, 15, 15))  # ROI = the whole volume, 2 windows per axis
    model = Pointwise()
    out = zoom_out_zoom_in(model, torch.from_numpy(volume)[None], overlap=0.5)
    np.testing.assert_allclose(out[0].numpy(), _pointwise(volume), atol=1e-5)
    # overlap 0.5: starts 0, 2, 4 on axis 0 (8 voxels, window 4) and 0, 4, 8 on the others.
    assert model.calls == 1 + 3 * 3 * 3


def test_label_prompts_follow_the_crops() -> None:
    volume = _volume((3, 5, 7))
    label = np.zeros_like(volume)
    label[2:4, 6:9, 8:10] = 1  # inside the ROI (1:5, 1:9, 3:11), partly at even indices
    model = Pointwise(with_label=True)
    with pytest.raises(ValueError, match="label="):
        zoom_out_zoom_in(model, torch.from_numpy(volume)[None])
    out = zoom_out_zoom_in(model, torch.from_numpy(volume)[None], label=torch.from_numpy(label))
    expected = _pointwise(_coarse_by_hand(volume)) + 100 * (_coarse_by_hand(label) - 0.5)
    roi = roi_from_mask(torch.from_numpy(expected > 0), WINDOW)
    expected[roi] = _pointwise(volume[roi]) + 100 * (label[roi] - 0.5)
    np.testing.assert_array_equal(out[0].numpy(), expected)


def test_tiny_segvol_on_an_odd_sized_volume() -> None:
    model = tiny_segvol()
    torch.manual_seed(0)
    volume = torch.rand(1, 11, 21, 18)
    out = zoom_out_zoom_in(model, volume)  # window defaults to model.img_size
    assert out.shape == (1, 11, 21, 18) and torch.isfinite(out).all()
    assert model.img_size == TINY["img_size"]
