"""The fused region sums and their hand-written backward against plain autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segbalance.losses.fused import region_sums


def _reference(logits, target, factor, squared):
    """Plain autograd: activation, one-hot, products, sums."""
    c = logits.shape[1]
    if c == 1:
        p = torch.sigmoid(logits)
        y = target.unsqueeze(1).to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], y[:, 0], reduction="none")
    else:
        p = torch.softmax(logits, 1)
        y = F.one_hot(target, c).movedim(-1, 1).to(logits.dtype)
        ce = F.cross_entropy(logits, target, reduction="none")
    f = torch.ones_like(target, dtype=logits.dtype) if factor is None else factor
    f1 = f.unsqueeze(1)
    dims = tuple(range(2, logits.ndim))
    out = [(f1 * p * y).sum(dims), (f1 * p).sum(dims), (f1 * p * p).sum(dims), (f1 * y).sum(dims)]
    return [*out, (f * ce).sum()]


@pytest.mark.parametrize("n_classes", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("spatial", [(5, 6), (3, 4, 5)])
def test_values_and_gradients_match_autograd(n_classes, weighted, spatial) -> None:
    gen = torch.Generator().manual_seed(n_classes * 10 + len(spatial) + weighted)
    logits = torch.randn(2, n_classes, *spatial, generator=gen, dtype=torch.float64) * 3
    high = 2 if n_classes == 1 else n_classes
    target = torch.randint(0, high, (2, *spatial), generator=gen)
    factor = torch.rand(2, *spatial, generator=gen, dtype=torch.float64) if weighted else None
    coeffs = torch.randn(5, generator=gen, dtype=torch.float64)

    def combine(values):
        inter, pred, pred_sq, ground, ce = values
        return (
            coeffs[0] * (inter**2).sum()
            + coeffs[1] * (pred * inter).sum()
            + coeffs[2] * pred_sq.sum()
            + coeffs[3] * (ground * pred).sum()
            + coeffs[4] * ce
        )

    a = logits.clone().requires_grad_()
    ours = region_sums(a, target, factor, squared=True, cross_entropy=True)
    combine(ours).backward()
    b = logits.clone().requires_grad_()
    ref = _reference(b, target, factor, squared=True)
    combine(ref).backward()
    for got, want in zip(ours, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-10)


def test_gradcheck_softmax_and_sigmoid() -> None:
    gen = torch.Generator().manual_seed(0)
    for c in (1, 3):
        logits = torch.randn(1, c, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        target = torch.randint(0, 2 if c == 1 else c, (1, 3, 4), generator=gen)
        factor = torch.rand(1, 3, 4, generator=gen, dtype=torch.float64)

        def fn(z, target=target, factor=factor):
            s = region_sums(z, target, factor, squared=True, cross_entropy=True)
            return s.intersection, s.pred, s.pred_sq, s.ce

        assert torch.autograd.gradcheck(fn, (logits,))
