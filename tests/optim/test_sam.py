"""SAM / ASAM: perturbation formula (METHODS §8.1-8.2), restore, base step, options, errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from segbalance.optim import SAM

from ._helpers import assert_same_params, make_batch, make_mlp, mse, reference_sam_training

W0 = [1.0, -2.0]
G0 = [0.3, -0.4]


def _perturb_2d(**options: object) -> np.ndarray:
    """Perturbation of the METHODS §8.2 example: w=(1,-2) as a 1x2 weight, g=(0.3,-0.4)."""
    w = nn.Parameter(torch.tensor([W0], dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, lr=0.1, **options)
    w.grad = torch.tensor([G0], dtype=torch.float64)
    opt.first_step()
    return (w.detach() - torch.tensor([W0], dtype=torch.float64)).numpy()[0]


def test_methods_example_sam() -> None:
    np.testing.assert_allclose(_perturb_2d(), [0.03, -0.04], atol=1e-12)


def test_methods_example_asam() -> None:
    t_w = np.abs(W0) + 0.01
    assert np.linalg.norm(t_w * G0) == pytest.approx(0.8592, abs=5e-5)
    eps = _perturb_2d(adaptive=True)  # rho=None -> 0.5 with adaptive
    np.testing.assert_allclose(eps, [0.1781, -0.9404], atol=5e-5)


def test_methods_example_davda54_adaptive() -> None:
    eps = _perturb_2d(adaptive=True, rho=2.0, asam_eta=0.0, asam_exclude_bias=False)
    np.testing.assert_allclose(eps, [0.7022, -3.7453], atol=5e-5)


def _linear_grads(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray):
    """Hand gradient of mean((x w^T + b - y)^2) for a 1-output linear layer."""
    r = x @ w.T + b - y  # (n, 1)
    n = x.shape[0]
    return 2.0 / n * r.T @ x, 2.0 / n * r.sum(axis=0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_first_step_matches_numpy_on_linear_model(adaptive: bool) -> None:
    torch.manual_seed(1)
    model = nn.Linear(3, 1).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    w, b = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    gw, gb = _linear_grads(x.numpy(), y.numpy(), w, b)
    rho = 0.3
    opt = SAM(model.named_parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=0.1)
    mse(model(x), y).backward()
    opt.first_step(zero_grad=True)
    # ASAM: T_w = |w| + 0.01 for "weight", 1 for "bias" (Kwon et al.)
    tw = np.abs(w) + 0.01 if adaptive else np.ones_like(w)
    norm = math.sqrt(((tw * gw) ** 2).sum() + (gb**2).sum())
    np.testing.assert_allclose(
        model.weight.detach().numpy(), w + rho * tw**2 * gw / norm, rtol=1e-10
    )
    np.testing.assert_allclose(model.bias.detach().numpy(), b + rho * gb / norm, rtol=1e-10)
    assert all(p.grad is None for p in model.parameters())


BASES = [
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("base_cls", "base_kwargs"), BASES, ids=["sgd_momentum", "adamw"])
def test_second_step_is_base_step_with_perturbed_gradient(base_cls, base_kwargs) -> None:
    model = make_mlp(seed=3)
    batches = [make_batch(s, 8) for s in range(3)]
    reference = reference_sam_training(
        model, batches, rho=0.05, make_opt=lambda ps: base_cls(ps, **base_kwargs)
    )
    opt = SAM(model.parameters(), base_cls, rho=0.05, **base_kwargs)
    for x, y in batches:
        mse(model(x), y).backward()
        opt.first_step(zero_grad=True)
        mse(model(x), y).backward()
        opt.second_step(zero_grad=True)
    assert_same_params(model, reference)
    assert opt.step_count == 3


def test_step_with_closure_equals_first_second_step() -> None:
    model_a, batches = make_mlp(seed=4), [make_batch(s, 6) for s in range(2)]
    model_b = copy.deepcopy(model_a)
    opt_a = SAM(model_a.parameters(), torch.optim.AdamW, lr=0.01)
    opt_b = SAM(model_b.parameters(), torch.optim.AdamW, lr=0.01)
    for x, y in batches:
        mse(model_a(x), y).backward()
        opt_a.first_step(zero_grad=True)
        mse(model_a(x), y).backward()
        opt_a.second_step(zero_grad=True)

        mse(model_b(x), y).backward()
        opt_b.step(lambda x=x, y=y: mse(model_b(x), y).backward())
        opt_b.zero_grad()
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=16), min_size=4, max_size=4),
    grads=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=16), min_size=4, max_size=4),
    rho=st.floats(1e-3, 5.0),
)
def test_restore_is_bit_exact_in_half_precision(values, grads, rho) -> None:
    w = nn.Parameter(torch.tensor(values, dtype=torch.float16))
    original = w.detach().clone()
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=0.1)
    w.grad = torch.tensor(grads, dtype=torch.float16)
    opt.first_step()
    opt.restore()
    assert torch.equal(w.detach(), original)  # adding and subtracting would drift in fp16


def test_per_group_rho_shares_one_global_norm() -> None:
    a = nn.Parameter(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([[3.0]], dtype=torch.float64))
    opt = SAM([{"params": [a], "rho": 0.5}, {"params": [b]}], torch.optim.SGD, rho=0.1, lr=1.0)
    a.grad = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    b.grad = torch.tensor([[4.0]], dtype=torch.float64)  # global ||g|| = 5
    opt.first_step()
    torch.testing.assert_close(
        a.detach(), torch.tensor([[1.0 + 0.5 * 3 / 5, 2.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(b.detach(), torch.tensor([[3.0 + 0.1 * 4 / 5]], dtype=torch.float64))


def test_exclude_norm_bias_leaves_them_unperturbed_and_out_of_the_norm() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)).double()
    opt = SAM(model.named_parameters(), torch.optim.SGD, rho=1.0, exclude_norm_bias=True, lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: torch.full_like(p, 2.0) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    opt.first_step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved == {"0.weight"}
    # only 0.weight (4 entries of 2) enters the norm: e = 2 / 4 = 0.5 per entry
    torch.testing.assert_close(
        model[0].weight.detach() - before["0.weight"], torch.full((2, 2), 0.5, dtype=torch.float64)
    )


def test_asam_weight_rule_uses_names_and_1d_rule_for_unnamed() -> None:
    """A norm scale (1-D, named '...weight') gets T_w by name, but not when unnamed."""
    norm_named = nn.LayerNorm(2).double()
    norm_unnamed = copy.deepcopy(norm_named)
    with torch.no_grad():
        norm_named.weight.copy_(torch.tensor([2.0, -3.0]))
        norm_unnamed.weight.copy_(torch.tensor([2.0, -3.0]))
    opt_named = SAM(norm_named.named_parameters(), torch.optim.SGD, adaptive=True, rho=1.0, lr=0.1)
    opt_unnamed = SAM(norm_unnamed.parameters(), torch.optim.SGD, adaptive=True, rho=1.0, lr=0.1)
    for norm in (norm_named, norm_unnamed):
        norm.weight.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
        norm.bias.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt_named.first_step()
    opt_unnamed.first_step()
    tw = np.array([2.01, 3.01])
    norm = math.sqrt((tw**2).sum() + 2.0)
    np.testing.assert_allclose(
        norm_named.weight.detach().numpy(), [2.0, -3.0] + tw**2 / norm, rtol=1e-10
    )
    np.testing.assert_allclose(
        norm_unnamed.weight.detach().numpy(), np.array([2.0, -3.0]) + 1 / 2.0, rtol=1e-10
    )


def test_rho_defaults() -> None:
    p = [nn.Parameter(torch.zeros(2, 2))]
    assert SAM(p, torch.optim.SGD, lr=0.1).param_groups[0]["rho"] == 0.05
    assert SAM(p, torch.optim.SGD, adaptive=True, lr=0.1).param_groups[0]["rho"] == 0.5


def test_param_groups_are_shared_with_the_base_optimizer() -> None:
    model = make_mlp()
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = make_batch(0, 4)
    mse(model(x), y).backward()
    opt.step(lambda: mse(model(x), y).backward())
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.005)


def test_added_param_group_gets_sam_and_base_defaults() -> None:
    frozen, trainable = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(2, 2))
    opt = SAM([trainable], torch.optim.AdamW, rho=0.1, lr=0.01)
    opt.add_param_group({"params": [frozen], "lr": 0.001})
    assert len(opt.param_groups) == len(opt.base_optimizer.param_groups) == 2
    group = opt.base_optimizer.param_groups[1]
    assert group["rho"] == 0.1 and group["betas"] == (0.9, 0.999) and group["lr"] == 0.001

    def set_grads() -> None:
        for p in (frozen, trainable):
            p.grad = torch.ones(2, 2)

    set_grads()
    opt.first_step()
    assert not torch.equal(frozen.detach(), torch.zeros(2, 2))  # the new group is perturbed
    opt.second_step()
    torch.testing.assert_close(frozen.detach(), torch.full((2, 2), -0.001))  # Adam: -lr * sign


@pytest.mark.parametrize("rho", [-0.1, float("nan"), float("inf"), "0.05", True])
def test_bad_rho_is_a_clear_error(rho) -> None:
    with pytest.raises(ValueError, match="rho"):
        SAM([nn.Parameter(torch.zeros(2))], torch.optim.SGD, rho=rho, lr=0.1)


def test_bad_group_rho_names_the_group() -> None:
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['rho'\]"):
        SAM(
            [
                {"params": [nn.Parameter(torch.zeros(2))]},
                {"params": [nn.Parameter(torch.zeros(2))], "rho": -1.0},
            ],
            torch.optim.SGD,
            lr=0.1,
        )


def test_step_without_closure_is_a_clear_error() -> None:
    opt = SAM([nn.Parameter(torch.zeros(2))], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()


def test_base_optimizer_instance_is_rejected() -> None:
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="optimizer class"):
        SAM([p], torch.optim.SGD([p], lr=0.1))


def test_first_step_without_gradients_and_twice() -> None:
    p = nn.Parameter(torch.zeros(2))
    opt = SAM([p], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="backward"):
        opt.first_step()
    p.grad = torch.ones(2)
    opt.first_step()
    with pytest.raises(RuntimeError, match="twice"):
        opt.first_step()
