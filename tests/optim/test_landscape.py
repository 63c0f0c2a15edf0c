"""Loss landscape: exact restore, filter normalisation, analytic quadratic of a linear model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from segbalance.optim.landscape import filter_normalized_directions, loss_landscape


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv3d(4, 2, 1),
    )


def cnn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 1, 6, 6, 6, generator=generator)
    target = torch.randint(0, 2, (2, 6, 6, 6), generator=generator)
    return inputs, target


def test_weights_buffers_and_modes_restored_bit_exactly() -> None:
    model = small_cnn()
    model.train()
    model[1].eval()  # a mixed-mode model: every submodule's own mode must come back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = loss_landscape(
        model, nn.CrossEntropyLoss(), cnn_batch(), steps=3, span=0.5, two_d=True, seed=4
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and not model[1].training and model[3].training
    assert all(p.grad is None for p in model.parameters())
    json.dumps(out, allow_nan=False)
    assert len(out["loss_2d"]) == 3 and all(len(row) == 3 for row in out["loss_2d"])
    # centre of the grid = unperturbed weights, in eval mode
    model.eval()
    with torch.no_grad():
        centre = nn.CrossEntropyLoss()(model(cnn_batch()[0]), cnn_batch()[1]).item()
    assert out["loss_1d"][1] == pytest.approx(centre, rel=1e-6)
    assert out["loss_2d"][1][1] == pytest.approx(centre, rel=1e-6)


def test_weights_restored_when_the_loss_raises() -> None:
    model = small_cnn()
    before = [p.clone() for p in model.parameters()]
    calls = []

    def failing(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return logits.mean()

    with pytest.raises(RuntimeError, match="boom"):
        loss_landscape(model, failing, cnn_batch(), steps=3, two_d=False)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_filter_normalisation_property() -> None:
    model = small_cnn()
    params = list(model.parameters())
    directions = filter_normalized_directions(params, torch.Generator().manual_seed(0))
    for p, d in zip(params, directions, strict=True):
        assert d.shape == p.shape
        if p.ndim <= 1:
            assert torch.count_nonzero(d) == 0
            continue
        w_norms = p.detach().reshape(p.shape[0], -1).norm(dim=1)
        d_norms = d.reshape(d.shape[0], -1).norm(dim=1)
        torch.testing.assert_close(d_norms, w_norms, rtol=1e-5, atol=0.0)
        # the direction is not just the weights rescaled
        assert not torch.allclose(d, p.detach())


def test_zero_weight_filter_gets_zero_direction() -> None:
    weight = torch.ones(3, 4)
    weight[1] = 0.0
    (d,) = filter_normalized_directions([weight], torch.Generator().manual_seed(0))
    assert torch.count_nonzero(d[1]) == 0
    torch.testing.assert_close(d.norm(dim=1)[[0, 2]], torch.full((2,), 2.0))


def linear_problem() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Linear(5, 3).double()
    inputs = torch.randn(16, 5, dtype=torch.float64)
    target = torch.randn(16, 3, dtype=torch.float64)
    return model, inputs, target


def test_linear_mse_matches_analytic_quadratic() -> None:
    # y = (W + a D1 + b D2) x + c (bias direction is zero), MSE(y, t) = mean((r + a u + b v)^2)
    # with r = W x + c - t, u = D1 x, v = D2 x: a quadratic computed here with numpy.
    model, inputs, target = linear_problem()
    out = loss_landscape(
        model, nn.MSELoss(), (inputs, target), steps=7, span=2.0, two_d=True, seed=11
    )
    generator = torch.Generator().manual_seed(11)
    d1, _ = filter_normalized_directions([model.weight, model.bias], generator)
    d2, _ = filter_normalized_directions([model.weight, model.bias], generator)
    x = inputs.numpy()
    r = x @ model.weight.detach().numpy().T + model.bias.detach().numpy() - target.numpy()
    u, v = x @ d1.numpy().T, x @ d2.numpy().T
    alphas = np.linspace(-2.0, 2.0, 7)
    np.testing.assert_allclose(out["alphas"], alphas, rtol=0, atol=1e-15)
    parabola = [np.mean((r + a * u) ** 2) for a in alphas]
    np.testing.assert_allclose(out["loss_1d"], parabola, rtol=1e-12)
    surface = [[np.mean((r + a * u + b * v) ** 2) for a in alphas] for b in alphas]
    np.testing.assert_allclose(out["loss_2d"], surface, rtol=1e-12)
    # the curve really is curved: second difference = 2 mean(u^2) h^2
    h = alphas[1] - alphas[0]
    second = np.diff(out["loss_1d"], 2)
    np.testing.assert_allclose(second, 2 * np.mean(u**2) * h**2, rtol=1e-9)


def test_seed_determinism_and_one_d_only() -> None:
    model, inputs, target = linear_problem()
    a = loss_landscape(model, nn.MSELoss(), (inputs, target), steps=5, two_d=False, seed=2)
    b = loss_landscape(model, nn.MSELoss(), (inputs, target), steps=5, two_d=False, seed=2)
    c = loss_landscape(model, nn.MSELoss(), (inputs, target), steps=5, two_d=False, seed=3)
    assert a == b and a["loss_1d"] != c["loss_1d"]
    assert "loss_2d" not in a and "betas" not in a
    assert (a["seed"], a["span"], a["steps"]) == (2, 1.0, 5)


def test_weighted_batch_is_passed_as_weight() -> None:
    model, inputs, target = linear_problem()
    weight = torch.rand(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def weighted_mse(pred: torch.Tensor, t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (weight * (pred - t) ** 2).mean()

    out = loss_landscape(model, weighted_mse, (inputs, target, weight), steps=3, two_d=False)
    with torch.no_grad():
        centre = weighted_mse(model(inputs), target, weight).item()
    assert out["loss_1d"][1] == pytest.approx(centre, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"steps": 1}, "steps"), ({"span": 0.0}, "span"), ({"span": float("inf")}, "span")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    model, inputs, target = linear_problem()
    with pytest.raises(ValueError, match=match):
        loss_landscape(model, nn.MSELoss(), (inputs, target), **kwargs)
    with pytest.raises(ValueError, match="batch"):
        loss_landscape(model, nn.MSELoss(), (inputs,))
