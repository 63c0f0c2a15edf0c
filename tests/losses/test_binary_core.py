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
