"""sam_step: accumulation, AMP (GradScaler), bf16, clipping, BatchNorm, variants, plain optimisers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from segbalance.optim import SAM, LookSAM, PeriodicSAM, sam_step

from ._helpers import (
    assert_same_params,
    explicit_sam_gradient,
    grads_at,
    make_batch,
    make_mlp,
    mse,
    reference_sam_training,
)


def test_single_micro_batch_equals_reference_and_returns_first_pass_loss() -> None:
    model = make_mlp(seed=1)
    batches = [make_batch(s, 8) for s in range(3)]
    reference = reference_sam_training(
        model, batches, 0.05, lambda ps: torch.optim.AdamW(ps, lr=0.01)
    )
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=0.01)
    for x, y in batches:
        expected = float(mse(model(x), y).detach())  # at w, before the step
        assert sam_step(model, opt, mse, [(x, y)]) == pytest.approx(expected, rel=1e-12)
    assert_same_params(model, reference)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("variant", ["sam", "looksam"])
def test_two_micro_batches_equal_one_batch_of_twice_the_size(variant: str) -> None:
    cls = SAM if variant == "sam" else LookSAM
    model_big, model_acc = make_mlp(seed=2), make_mlp(seed=2)
    opt_big = cls(
        model_big.parameters(),
        torch.optim.AdamW,
        lr=0.01,
        **({"k": 2} if variant == "looksam" else {}),
    )
    opt_acc = cls(
        model_acc.parameters(),
        torch.optim.AdamW,
        lr=0.01,
        **({"k": 2} if variant == "looksam" else {}),
    )
    for step in range(3):
        x, y = make_batch(100 + step, 6)
        loss_big = sam_step(model_big, opt_big, mse, [(x, y)])
        loss_acc = sam_step(model_acc, opt_acc, mse, [(x[:3], y[:3]), (x[3:], y[3:])])
        assert loss_acc == pytest.approx(loss_big, rel=1e-12)
    assert_same_params(model_acc, model_big, rtol=1e-12, atol=1e-14)


def test_unequal_micro_batches_are_weighted_by_size() -> None:
    model_big, model_acc = make_mlp(seed=3), make_mlp(seed=3)
    opt_big = SAM(model_big.parameters(), torch.optim.SGD, lr=0.1)
    opt_acc = SAM(model_acc.parameters(), torch.optim.SGD, lr=0.1)
    x, y = make_batch(7, 7)
    sam_step(model_big, opt_big, mse, [(x, y)])
    sam_step(model_acc, opt_acc, mse, [(x[:2], y[:2]), (x[2:], y[2:])])
    assert_same_params(model_acc, model_big, rtol=1e-12, atol=1e-14)


def test_local_mode_is_per_micro_batch_sam() -> None:
    """g_SAM = sum_j (n_j / n) grad L_j(w + rho g_j / ||g_j||), computed by hand."""
    model = make_mlp(seed=4)
    reference = copy.deepcopy(model)
    x, y = make_batch(8, 6)
    parts = [(x[:3], y[:3]), (x[3:], y[3:])]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    sam_step(model, opt, mse, parts, sam_perturbation="local")
    g_sam = [
        0.5 * a + 0.5 * b
        for a, b in zip(
            *(explicit_sam_gradient(reference, part, 0.2) for part in parts), strict=True
        )
    ]
    with torch.no_grad():
        for p, g in zip(reference.parameters(), g_sam, strict=True):
            p.sub_(0.1 * g)
    assert_same_params(model, reference)


def test_weighted_micro_batches_pass_weight_to_the_loss() -> None:
    model_w, model_ref = make_mlp(seed=5), make_mlp(seed=5)
    x, y = make_batch(9, 6)
    weight = torch.linspace(0.5, 2.0, 6, dtype=torch.float64).reshape(6, 1)
    opt_w = SAM(model_w.parameters(), torch.optim.SGD, lr=0.1)
    opt_ref = SAM(model_ref.parameters(), torch.optim.SGD, lr=0.1)
    sam_step(model_w, opt_w, mse, [(x, y, weight)])
    sam_step(model_ref, opt_ref, lambda out, t: mse(out, t, weight), [(x, y)])
    assert_same_params(model_w, model_ref, rtol=0, atol=0)


def test_plain_optimizer_with_accumulation_and_clipping() -> None:
    model = make_mlp(seed=6)
    reference = copy.deepcopy(model)
    x, y = make_batch(11, 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected_loss = float(mse(reference(x), y).detach())
    loss = sam_step(model, opt, mse, [(x[:3], y[:3]), (x[3:], y[3:])], max_grad_norm=0.01)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    g = grads_at(reference, (x, y))
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    assert norm > 0.01  # so the clip is active
    with torch.no_grad():
        for p, gi in zip(reference.parameters(), g, strict=True):
            p.sub_(0.1 * gi * 0.01 / (norm + 1e-6))  # clip_grad_norm_'s formula
    assert_same_params(model, reference)


def test_clipping_applies_to_the_sam_gradient() -> None:
    model = make_mlp(seed=7)
    reference = copy.deepcopy(model)
    x, y = make_batch(12, 8)
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    sam_step(model, opt, mse, [(x, y)], max_grad_norm=0.01)
    g_sam = explicit_sam_gradient(reference, (x, y), 0.05)
    norm = torch.sqrt(sum((g**2).sum() for g in g_sam))
    assert norm > 0.01
    with torch.no_grad():
        for p, g in zip(reference.parameters(), g_sam, strict=True):
            p.sub_(0.1 * g * 0.01 / (norm + 1e-6))
    assert_same_params(model, reference)


def _float32_setup(seed: int = 8):
    model = make_mlp(seed=seed, dtype=torch.float32)
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=0.01)
    return model, opt, make_batch(13, 8, dtype=torch.float32)


@pytest.mark.parametrize("which_pass", ["first", "second"])
def test_amp_overflow_skips_step_and_backs_off_once(which_pass: str) -> None:
    model, opt, (x, y) = _float32_setup()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    calls = 0

    def exploding_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        blow_up = (which_pass == "first") == (calls == 1)
        # 1e36 * 2**16 overflows float32: inf gradients, as an fp16 overflow would
        return mse(out, target) * (1e36 if blow_up else 1.0)

    sam_step(model, opt, exploding_loss, [(x, y)], scaler=scaler)
    assert calls == (1 if which_pass == "first" else 2)
    assert scaler.get_scale() == 2.0**15
    assert opt.skipped_steps == 1 and opt.step_count == 0
    assert opt.base_optimizer.state == {} or all(
        len(s) == 0 for s in opt.base_optimizer.state.values()
    )
    for p, w in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), w)
    # the next, finite step goes through
    sam_step(model, opt, mse, [(x, y)], scaler=scaler)
    assert opt.step_count == 1 and opt.skipped_steps == 1


def test_amp_overflow_with_plain_optimizer_counts_skip() -> None:
    model = make_mlp(seed=8, dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = make_batch(13, 8, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    sam_step(model, opt, lambda o, t: mse(o, t) * 1e36, [(x, y)], scaler=scaler)
    assert opt.skipped_steps == 1 and scaler.get_scale() == 2.0**15
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), before, strict=True))


def test_nonfinite_loss_without_scaler_skips() -> None:
    model, opt, (x, y) = _float32_setup()
    before = [p.detach().clone() for p in model.parameters()]
    loss = sam_step(model, opt, lambda o, t: mse(o, t) * float("nan"), [(x, y)])
    assert loss != loss  # NaN is returned for the trainer to act on
    assert opt.skipped_steps == 1
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), before, strict=True))


def test_scaled_step_equals_unscaled_step() -> None:
    """A power-of-two scale is exact in binary floating point: same result as no scaler."""
    model_a, opt_a, (x, y) = _float32_setup()
    model_b, opt_b, _ = _float32_setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for _ in range(2):
        sam_step(
            model_a, opt_a, mse, [(x[:4], y[:4]), (x[4:], y[4:])], scaler=scaler, max_grad_norm=1.0
        )
        sam_step(model_b, opt_b, mse, [(x[:4], y[:4]), (x[4:], y[4:])], max_grad_norm=1.0)
    assert scaler.get_scale() == 2.0**10
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)


def test_bf16_autocast_step_is_finite_and_close_to_fp32() -> None:
    model_bf, opt_bf, (x, y) = _float32_setup()
    model_fp, opt_fp, _ = _float32_setup()
    start = [p.detach().clone() for p in model_fp.parameters()]
    opt_bf = SAM(model_bf.parameters(), torch.optim.SGD, lr=0.5)
    opt_fp = SAM(model_fp.parameters(), torch.optim.SGD, lr=0.5)
    loss_bf = sam_step(model_bf, opt_bf, mse, [(x, y)], autocast_dtype=torch.bfloat16)
    loss_fp = sam_step(model_fp, opt_fp, mse, [(x, y)])
    assert loss_bf == pytest.approx(loss_fp, rel=3e-2)
    upd_bf = torch.cat(
        [(p.detach() - w).reshape(-1) for p, w in zip(model_bf.parameters(), start, strict=True)]
    )
    upd_fp = torch.cat(
        [(p.detach() - w).reshape(-1) for p, w in zip(model_fp.parameters(), start, strict=True)]
    )
    assert torch.isfinite(upd_bf).all()
    assert not torch.equal(upd_bf, upd_fp)  # autocast really ran in bf16
    assert torch.linalg.vector_norm(upd_bf - upd_fp) < 0.05 * torch.linalg.vector_norm(upd_fp)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_stats_come_from_the_first_pass_only(momentum: float | None) -> None:
    model = make_mlp(seed=9, batchnorm=True)
    model[1].momentum = momentum
    reference = copy.deepcopy(model)
    x, y = make_batch(14, 8)
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    sam_step(model, opt, mse, [(x, y)])
    # reference: one train-mode forward updates the stats; the SAM gradient is taken in
    # train mode (batch statistics) at the perturbed point, by hand
    bn_ref = copy.deepcopy(reference)
    bn_ref(x)
    g_sam = explicit_sam_gradient(reference, (x, y), 0.05)
    with torch.no_grad():
        for p, g in zip(reference.parameters(), g_sam, strict=True):
            p.sub_(0.1 * g)
    assert_same_params(model, reference)
    assert int(model[1].num_batches_tracked) == 1
    assert model[1].momentum == momentum
    torch.testing.assert_close(model[1].running_mean, bn_ref[1].running_mean, rtol=0, atol=0)
    torch.testing.assert_close(model[1].running_var, bn_ref[1].running_var, rtol=0, atol=0)


def _counting(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(
    ("cls", "k", "expected_passes"),
    [(LookSAM, 3, 2 + 1 + 1 + 2 + 1 + 1), (PeriodicSAM, 2, 2 + 1 + 2 + 1 + 2 + 1)],
)
def test_variants_take_one_pass_on_non_perturbing_steps(cls, k: int, expected_passes: int) -> None:
    model = make_mlp(seed=10)
    calls = _counting(model)
    opt = cls(model.parameters(), torch.optim.SGD, k=k, lr=0.05)
    for step in range(6):
        sam_step(model, opt, mse, [make_batch(200 + step, 4)])
    assert calls[0] == expected_passes
    assert opt.step_count == 6


def test_bad_arguments_are_clear_errors() -> None:
    model = make_mlp()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    batch = make_batch(0, 4)
    with pytest.raises(ValueError, match="did you mean 'local'"):
        sam_step(model, opt, mse, [batch], sam_perturbation="locl")
    with pytest.raises(ValueError, match="at least one micro-batch"):
        sam_step(model, opt, mse, [])
    with pytest.raises(ValueError, match=r"micro_batches\[0\]"):
        sam_step(model, opt, mse, [batch[0]])
    with pytest.raises(ValueError, match="max_grad_norm"):
        sam_step(model, opt, mse, [batch], max_grad_norm=0.0)
    looksam = LookSAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="LookSAM needs sam_perturbation='global'"):
        sam_step(model, looksam, mse, [batch], sam_perturbation="local")
