"""The binary core's kept buffers and its CE form: ``log p_t`` from one sigmoid and one log
(with a floor against underflow), the voxel CE gradient kept from the forward and consumed
by the first backward (a second backward through the graph recomputes it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbalance.losses import build_loss

from . import _numpy_ref as ref
from .conftest import random_case, tl, tt

# true-class logits far below the float32 (-87) and float64 (-745) underflow of sigmoid
EXTREME = [-1.0e4, -900.0, -200.0, -88.0, -80.5, -30.0, -1.0, 0.0, 2.5, 40.0, 1.0e4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("offset_loss", ["ce", "la_ce"])
def test_ce_value_and_gradient_at_extreme_logits(dtype, c, offset_loss) -> None:
    z1 = np.array(EXTREME * 2, dtype=np.float64)
    t = np.array([0, 1] * len(EXTREME)).reshape(1, 2, len(EXTREME))[..., None]
    if c == 1:
        z = z1.reshape(1, 1, 2, len(EXTREME), 1)
    else:
        z = np.stack([np.zeros_like(z1), z1]).reshape(1, 2, 2, len(EXTREME), 1)
    opts = {} if offset_loss == "ce" else {"prior": 0.3 if c == 1 else [0.7, 0.3]}
    x = tt(z, dtype).requires_grad_(True)
    loss = build_loss(offset_loss, **opts)(x, tl(t))
    loss.backward()
    reference = ref.ce if offset_loss == "ce" else ref.la_ce
    expected = reference(z, t, **opts)
    assert float(loss.detach()) == pytest.approx(
        expected, rel=1e-6 if dtype == torch.float32 else 1e-12
    )
    # d/dd of the mean BCE: (sigmoid(d + offset) - y) / N, +-1/N at the extremes
    offset = 0.0 if not opts else float(np.log(0.3 / 0.7))
    y = t.reshape(-1).astype(np.float64)
    d = z1 + offset
    sig = np.where(
        d >= 0, 1 / (1 + np.exp(-np.abs(d))), np.exp(-np.abs(d)) / (1 + np.exp(-np.abs(d)))
    )
    grad = x.grad.double().numpy()[:, -1].reshape(-1)
    np.testing.assert_allclose(grad, (sig - y) / y.size, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("spec", ["ce", "balanced", "dice+ce", "dice"])
@pytest.mark.parametrize("c", [1, 2])
def test_second_backward_through_the_graph_gives_the_same_gradient(spec, c) -> None:
    # the first backward consumes the kept CE gradient in place; a second one recomputes it
    z, t = random_case(977 + c, n_classes=c, spatial=(4, 3, 5), fg=0.3)
    opts = {"prior": 0.2 if c == 1 else [0.8, 0.2]} if spec == "balanced" else {}
    x = tt(z).requires_grad_(True)
    loss = build_loss(spec, **opts)(x, tl(t))
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    first = first.clone()
    (second,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(second, first, rtol=1e-12, atol=1e-15)
    if spec == "dice+ce":
        f = lambda zz: ref.dice(zz, t) + ref.ce(zz, t)  # noqa: E731
        from .test_gradients import numeric_grad

        np.testing.assert_allclose(first.numpy(), numeric_grad(f, z), rtol=1e-5, atol=1e-8)


def test_float_label_check_reports_the_exact_integer_range() -> None:
    # the C <= 2 range check runs on the float labels; the message gives the int64 values
    t = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    t[0, 0, 0, 0] = 2**40 + 1
    t[0, 1, 0, 0] = -3
    with pytest.raises(ValueError, match=r"got values in \[-3, 1099511627777\]"):
        build_loss("dice")(torch.zeros(1, 1, 4, 4, 4), t)


@pytest.mark.parametrize("shift", [-3.0, 0.0])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_background_sums_from_the_foreground_equal_the_direct_ones(shift, squared, weighted):
    # small foreground, background mostly (shift -3) or half (0: derived only without the
    # squared sums) predicted as background: both branches give the direct sums
    from segbalance.losses import binary

    gen = torch.Generator().manual_seed(5)
    d = torch.randn(2, 5000, generator=gen, dtype=torch.float64) * 2 + shift
    y = (torch.rand(2, 5000, generator=gen) < 0.05).double()
    fr = torch.rand(2, 5000, generator=gen, dtype=torch.float64) if weighted else None
    cfg = binary.CoreConfig(False, 0.0, True, squared, True, None)
    derived = binary._block_sums(d, y, None, fr, None, cfg, torch.empty_like(d), None)
    q = torch.sigmoid(-d)
    f = torch.ones_like(d) if fr is None else fr
    expected = [(f * q * (1 - y)).sum(1), (f * q).sum(1), (f * q * q).sum(1)]
    torch.testing.assert_close(derived[2][:, 0], expected[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(derived[3][:, 0], expected[1], rtol=1e-12, atol=0)
    if squared:
        torch.testing.assert_close(derived[4][:, 0], expected[2], rtol=1e-12, atol=0)


@pytest.mark.parametrize("c", [1, 2])
def test_all_foreground_confident_sample_keeps_its_tiny_background_exact(c) -> None:
    # p ~ 1 everywhere: float32 1 - p keeps ~2 digits of q = sigmoid(-12.3) = 4.5e-6, which
    # the background Dice (empty target: smooth / (sum q + smooth)) shows; C = 1 scores
    # [1 - p, p] in generalized_dice, C = 2 the background channel of dice
    d = np.full((1, 1, 4, 4, 4), 12.3)
    d[0, 0, 0, 0, 0] = 11.7
    z = d if c == 1 else np.concatenate([np.zeros_like(d), d], axis=1)
    t = np.ones((1, 4, 4, 4), dtype=np.int64)
    name, opts = ("generalized_dice", {}) if c == 1 else ("dice", {"include_background": True})
    got = float(build_loss(name, **opts)(tt(z, torch.float32), tl(t)))
    reference = ref.dice if name == "dice" else ref.generalized_dice
    # float32 to a few epsilons (the losses are 1 - ratio: absolute error ~1e-7)
    assert got == pytest.approx(reference(z, t, **opts), rel=1e-5, abs=3e-7)
