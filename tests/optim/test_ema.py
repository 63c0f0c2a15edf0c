"""ModelEMA against the running average computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segbalance.optim.ema import ModelEMA


def test_ema_follows_the_warmed_up_recurrence() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9)
    expected = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    for n in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked.add_(1)
        ema.update(model)
        d = min(0.9, (1 + n) / (10 + n))  # warm-up, then the decay
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                expected[k] = d * expected[k] + (1 - d) * v.double()
            else:
                expected[k] = v.clone()
    got = ema.module.state_dict()
    for k, v in expected.items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(got[k].double(), v, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(got[k], v)  # counters are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_round_trip_and_bad_decay() -> None:
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, 0.5)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 2), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    for a, b in zip(other.module.parameters(), ema.module.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="expected a value in \\(0, 1\\)"):
        ModelEMA(model, 1.0)
