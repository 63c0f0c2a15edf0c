"""Input handling: layouts, tiny shapes, non-contiguous tensors, NaN propagation, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import available_losses, build_loss, inverse_lesion_weights

from . import _numpy_ref as ref
from .conftest import IGNORE, random_case, tl, tt, value


def _opts(name: str, c: int) -> dict:
    if name in ("la_ce", "balanced"):
        return {"prior": 0.1 if c == 1 else [0.8, 0.1, 0.1]}
    if name == "calf":
        return {"branch": "bce_dice"}
    return {}


@pytest.mark.parametrize("c", [1, 3])
def test_2d_target_with_channel_axis(c: int) -> None:
    z, t = random_case(701, n_classes=c, spatial=(9, 11))
    loss = build_loss("ce+dice+topk_ce")
    a, b = value(loss, z, t), value(loss, z, t[:, None])
    assert a == pytest.approx(b, rel=1e-12)
    assert a == pytest.approx(ref.ce(z, t) + ref.dice(z, t) + ref.topk_ce(z, t), rel=1e-5)


@pytest.mark.parametrize("name", available_losses())
@pytest.mark.parametrize("c", [1, 3])
def test_single_voxel_volume(name: str, c: int) -> None:
    """A (1, C, 1, 1, 1) input is valid (top-K keeps max(1, .) voxels) and finite."""
    z = torch.tensor(np.linspace(-1, 1, c).reshape(1, c, 1, 1, 1), requires_grad=True)
    t = torch.ones(1, 1, 1, 1, dtype=torch.long)
    out = build_loss(name, **_opts(name, c))(z, t)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", ["ce", "dice", "generalized_dice", "topk_dice", "dbce", "focal"])
def test_non_contiguous_logits(name: str) -> None:
    z, t = random_case(703, n_classes=3, spatial=(6, 7, 5))
    zt = tt(np.ascontiguousarray(np.swapaxes(z, 2, 4))).transpose(2, 4)  # same values, strided
    assert not zt.is_contiguous()
    loss = build_loss(name)
    assert float(loss(zt, tl(t))) == pytest.approx(value(loss, z, t), rel=1e-12)
    cl = tt(z, torch.float32).contiguous(memory_format=torch.channels_last_3d)
    assert float(loss(cl, tl(t))) == pytest.approx(value(loss, z, t), rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "dice", "focal", "la_ce", "tversky"])
def test_nan_logits_are_not_repaired(name: str) -> None:
    """§0: non-finite logits are not repaired by the loss (the trainer detects them)."""
    z, t = random_case(705, n_classes=1)
    z[0, 0, 1, 1, 1] = np.nan
    assert not np.isfinite(value(build_loss(name, **_opts(name, 1)), z, t))


def test_inverse_lesion_voxel_weighting_with_ignore() -> None:
    z, t = random_case(707, n_classes=1, fg=0.08, ignore_index=IGNORE)
    auto = value(build_loss("dice", voxel_weighting="inverse_lesion", ignore_index=IGNORE), z, t)
    w = inverse_lesion_weights(tl(t), batched=True, ignore_index=IGNORE)
    assert (w[torch.as_tensor(t == IGNORE)] == 0).all()
    explicit = value(build_loss("dice", ignore_index=IGNORE), z, t, weight=w.double())
    assert auto == pytest.approx(explicit, rel=1e-9)


def test_loss_is_reusable_and_stateless() -> None:
    """The same module gives the same value when called twice and on another shape."""
    loss = build_loss("ce+topk_dice", k=20)
    z1, t1 = random_case(709, n_classes=1, spatial=(6, 7, 5))
    z2, t2 = random_case(711, n_classes=1, spatial=(9, 11), batch=3)
    a = value(loss, z1, t1)
    value(loss, z2, t2)
    assert value(loss, z1, t1) == a


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["ce+dice", "focal", "generalized_dice", "topk_dice", "dbce"])
def test_cuda_matches_cpu(name: str) -> None:
    z, t = random_case(713, n_classes=3, spatial=(6, 7, 5))
    loss = build_loss(name)
    cpu = value(loss, z, t)
    out = loss(tt(z).cuda(), tl(t).cuda())
    assert out.device.type == "cuda"
    assert float(out) == pytest.approx(cpu, rel=1e-9)
    w = inverse_lesion_weights(tl(t).cuda(), batched=True)
    assert w.device.type == "cuda" and w.dtype == torch.float32
