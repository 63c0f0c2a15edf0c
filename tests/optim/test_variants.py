"""LookSAM and periodic SAM (METHODS §8.6) against explicit reference loops."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from segbalance.optim import SAM, LookSAM, PeriodicSAM

from ._helpers import (
    assert_same_params,
    explicit_sam_gradient,
    grads_at,
    make_batch,
    make_mlp,
    mse,
    reference_sam_training,
)


def _fail_closure() -> None:
    raise AssertionError("closure must not run on a non-perturbing step")


def test_looksam_worked_example() -> None:
    p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = LookSAM([p], torch.optim.SGD, lr=1.0)  # k=5, alpha=0.7
    p.grad = torch.tensor([1.0, 0.0], dtype=torch.float64)  # g at w
    opt.first_step()
    p.grad = torch.tensor([0.8, 0.6], dtype=torch.float64)  # g_s at w + e
    opt.second_step()
    torch.testing.assert_close(opt.g_v[p], torch.tensor([0.0, 0.6], dtype=torch.float64))
    torch.testing.assert_close(p.detach(), torch.tensor([-0.8, -0.6], dtype=torch.float64))
    p.grad = torch.tensor([0.5, 0.5], dtype=torch.float64)
    opt.step(_fail_closure)
    used = torch.tensor([-0.8, -0.6], dtype=torch.float64) - p.detach()
    torch.testing.assert_close(
        used, torch.tensor([0.5, 0.9950], dtype=torch.float64), atol=5e-5, rtol=0
    )
    # exact value: 0.5 + 0.7 * sqrt(0.5) / 0.6 * 0.6
    assert used[1].item() == pytest.approx(0.5 + 0.7 * math.sqrt(0.5), rel=1e-12)


def _orthogonal(
    g: torch.Tensor, g_s: torch.Tensor, dot: float, g_norm: float, gs_norm: float
) -> torch.Tensor:
    """g_v = g_s - ||g_s|| cos(g, g_s) g / ||g||, the paper's formula written literally."""
    cos = dot / (g_norm * gs_norm)
    return g_s - gs_norm * cos * g / g_norm


def _reference_looksam(model, batches, rho, k, alpha, lr, global_):
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9)
    g_v = None
    for t, batch in enumerate(batches):
        g = grads_at(ref, batch)
        if t % k == 0:
            g_s = explicit_sam_gradient(ref, batch, rho)
            if global_:
                dot = sum(float((a * b).sum()) for a, b in zip(g, g_s, strict=True))
                gn = math.sqrt(sum(float((a * a).sum()) for a in g))
                sn = math.sqrt(sum(float((b * b).sum()) for b in g_s))
                g_v = [_orthogonal(a, b, dot, gn, sn) for a, b in zip(g, g_s, strict=True)]
            else:
                g_v = [
                    _orthogonal(a, b, float((a * b).sum()), float(a.norm()), float(b.norm()))
                    for a, b in zip(g, g_s, strict=True)
                ]
            used = g_s
        elif global_:
            gn = math.sqrt(sum(float((a * a).sum()) for a in g))
            vn = math.sqrt(sum(float((v * v).sum()) for v in g_v))
            used = [a + alpha * gn / vn * v for a, v in zip(g, g_v, strict=True)]
        else:
            # a 1-element tensor (the output bias) has g_v = 0: METHODS says use g unchanged
            used = [
                a if float(v.norm()) == 0 else a + alpha * float(a.norm()) / float(v.norm()) * v
                for a, v in zip(g, g_v, strict=True)
            ]
        for p, u in zip(ref.parameters(), used, strict=True):
            p.grad = u
        opt.step()
    return ref


@pytest.mark.parametrize("looksam_global", [False, True])
def test_looksam_matches_reference_loop(looksam_global: bool) -> None:
    model = make_mlp(seed=5)
    batches = [make_batch(10 + s, 8) for s in range(5)]
    reference = _reference_looksam(
        model, batches, rho=0.1, k=2, alpha=0.7, lr=0.05, global_=looksam_global
    )
    opt = LookSAM(
        model.parameters(),
        torch.optim.SGD,
        rho=0.1,
        k=2,
        looksam_global=looksam_global,
        lr=0.05,
        momentum=0.9,
    )
    closure_calls = 0
    for x, y in batches:

        def closure(x=x, y=y) -> None:
            nonlocal closure_calls
            closure_calls += 1
            mse(model(x), y).backward()

        mse(model(x), y).backward()
        opt.step(closure)
        opt.zero_grad()
    assert closure_calls == 3  # refresh at t = 0, 2, 4
    assert_same_params(model, reference)


def test_looksam_per_tensor_and_global_differ() -> None:
    """Sanity of the option itself: the two decompositions give different trajectories."""
    results = []
    for looksam_global in (False, True):
        model = make_mlp(seed=5)
        opt = LookSAM(
            model.parameters(), torch.optim.SGD, k=2, looksam_global=looksam_global, lr=0.05
        )
        for x, y in [make_batch(s, 8) for s in range(2)]:
            mse(model(x), y).backward()
            opt.step(lambda x=x, y=y, m=model: mse(m(x), y).backward())
            opt.zero_grad()
        results.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert not torch.allclose(results[0], results[1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("k", [2, 3])
def test_periodic_sam_does_sam_exactly_every_kth_step(k: int) -> None:
    model = make_mlp(seed=6)
    batches = [make_batch(20 + s, 8) for s in range(6)]
    reference = reference_sam_training(
        model,
        batches,
        0.05,
        lambda ps: torch.optim.AdamW(ps, lr=0.01),
        sam_steps=lambda t: t % k == 0,
    )
    opt = PeriodicSAM(model.parameters(), torch.optim.AdamW, k=k, lr=0.01)
    for t, (x, y) in enumerate(batches):
        assert opt.is_sam_iteration == (t % k == 0)
        mse(model(x), y).backward()
        opt.step((lambda x=x, y=y: mse(model(x), y).backward()) if t % k == 0 else _fail_closure)
        opt.zero_grad()
    assert_same_params(model, reference)


def test_sam_start_frac_runs_plain_steps_first() -> None:
    model = make_mlp(seed=7)
    batches = [make_batch(30 + s, 8) for s in range(4)]
    reference = reference_sam_training(
        model, batches, 0.05, lambda ps: torch.optim.SGD(ps, lr=0.1), sam_steps=lambda t: t >= 2
    )
    opt = SAM(model.parameters(), torch.optim.SGD, sam_start_frac=0.5, total_steps=4, lr=0.1)
    for x, y in batches:
        mse(model(x), y).backward()
        opt.step(lambda x=x, y=y: mse(model(x), y).backward())
        opt.zero_grad()
    assert_same_params(model, reference)


def test_variant_option_errors() -> None:
    p = [nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="k to be an integer"):
        LookSAM(p, torch.optim.SGD, k=0, lr=0.1)
    with pytest.raises(ValueError, match="k to be an integer"):
        PeriodicSAM(p, torch.optim.SGD, k=1.5, lr=0.1)
    with pytest.raises(ValueError, match="alpha"):
        LookSAM(p, torch.optim.SGD, alpha=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        SAM(p, torch.optim.SGD, sam_start_frac=0.2, lr=0.1)
    with pytest.raises(ValueError, match="sam_start_frac"):
        SAM(p, torch.optim.SGD, sam_start_frac=1.5, total_steps=10, lr=0.1)
