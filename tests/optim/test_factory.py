"""build_optimizer: names, variants, options, errors."""

from __future__ import annotations

import pytest
import torch

from segbalance.optim import SAM, LookSAM, PeriodicSAM, build_optimizer

from ._helpers import make_mlp


def test_plain_and_variants() -> None:
    model = make_mlp()
    plain = build_optimizer(model, "sgd", lr=0.1, momentum=0.9)
    assert type(plain) is torch.optim.SGD and plain.param_groups[0]["momentum"] == 0.9
    sam = build_optimizer(model, "adamw", lr=0.01, weight_decay=0.1, sam_variant="sam")
    assert type(sam) is SAM and isinstance(sam.base_optimizer, torch.optim.AdamW)
    assert sam.param_groups[0]["rho"] == 0.05 and sam.param_groups[0]["weight_decay"] == 0.1
    asam = build_optimizer(model, sam_variant="asam")
    assert asam.param_groups[0]["adaptive"] is True and asam.param_groups[0]["rho"] == 0.5
    assert asam.param_groups[0]["param_names"][0] == "0.weight"  # names reach ASAM's rule
    look = build_optimizer(model, sam_variant="looksam", rho=0.1, k=4, alpha=0.5)
    assert type(look) is LookSAM and (look.k, look.alpha) == (4, 0.5)
    assert look.param_groups[0]["rho"] == 0.1
    periodic = build_optimizer(model.parameters(), "adam", sam_variant="sam_k", k=3)
    assert type(periodic) is PeriodicSAM and periodic.k == 3


def test_frozen_parameters_are_left_out() -> None:
    model = make_mlp()
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model)
    assert all(p is not model[0].weight for p in opt.param_groups[0]["params"])
    assert "0.weight" not in opt.param_groups[0]["param_names"]
    assert len(opt.param_groups[0]["params"]) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "adamm"}, "did you mean 'adam"),
        ({"sam_variant": "lookasm"}, "did you mean 'looksam'"),
        ({"sam_variant": "looksam", "alpah": 0.5}, "did you mean 'alpha'"),
        ({"sam_variant": "sam", "k": 3}, "Unknown option 'k'"),
        ({"rho": 0.05}, "needs a SAM variant"),
    ],
)
def test_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_optimizer(make_mlp(), **kwargs)
