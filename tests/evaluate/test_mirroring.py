"""Test-time mirroring in predict_logits, against the average computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segbalance.config import ValidationConfig
from segbalance.evaluate.inference import predict_logits


def _asymmetric_net() -> nn.Module:
    torch.manual_seed(0)
    # a non-symmetric 3x3x3 kernel: mirroring changes the output
    return nn.Conv3d(1, 2, 3, padding=1, bias=True)


@pytest.mark.parametrize("axes", [(0,), (1, 2), (0, 1, 2)])
def test_mirroring_averages_every_flip_combination(axes: tuple[int, ...]) -> None:
    net = _asymmetric_net()
    image = np.random.default_rng(1).normal(size=(1, 8, 6, 10)).astype(np.float32)
    # one window covering the whole volume with constant blending = a plain forward pass
    got = predict_logits(net, image, (8, 6, 10), mode="constant", mirror_axes=axes)
    x = torch.from_numpy(image)[None]
    expected = torch.zeros(1, 2, 8, 6, 10)
    subsets = [[]]
    for a in axes:  # all 2**k subsets, by hand
        subsets += [[*s, a + 2] for s in subsets]
    with torch.no_grad():
        for dims in subsets:
            expected += net(x.flip(dims)).flip(dims) if dims else net(x)
    expected /= len(subsets)
    torch.testing.assert_close(got, expected[0], rtol=1e-5, atol=1e-5)
    plain = predict_logits(net, image, (8, 6, 10), mode="constant")
    assert not torch.allclose(plain, got, atol=1e-4)  # the kernel is not symmetric


def test_mirroring_leaves_an_equivariant_model_unchanged() -> None:
    net = nn.Conv3d(1, 1, 1)  # pointwise: commutes with every flip
    image = np.random.default_rng(2).normal(size=(1, 12, 12, 12)).astype(np.float32)
    plain = predict_logits(net, image, (8, 8, 8), overlap=0.5)
    mirrored = predict_logits(net, image, (8, 8, 8), overlap=0.5, mirror_axes=(0, 2))
    torch.testing.assert_close(mirrored, plain, rtol=1e-5, atol=1e-6)


def test_bad_mirror_axes_are_refused() -> None:
    net = nn.Conv3d(1, 1, 1)
    with pytest.raises(ValueError, match="mirror_axes"):
        predict_logits(net, np.zeros((1, 4, 4, 4), np.float32), (4, 4, 4), mirror_axes=(3,))
    with pytest.raises(ValueError, match="distinct spatial axes"):
        ValidationConfig(mirror_axes=(0, 0))
