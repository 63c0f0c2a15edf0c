"""Injected NaN/inf in inputs and gradients: the trainer's policy holds, checkpoints stay finite.

Faults are injected into real training runs (in-process ``train``): a NaN image patch at a
chosen batch (through a ``PatchLoader`` subclass) and an inf/NaN gradient on a chosen
backward pass (a tensor hook on a parameter: with SAM, backward ``2k-1`` is the first pass
of step ``k`` and ``2k`` its second pass at ``w + e``). A skipped step must leave the
weights exactly as they were, so a 4-step run whose last step is skipped equals a 3-step
run bit for bit (constant learning rate).
"""

from __future__ import annotations

import math

import pytest
import torch
from tests.train.conftest import TINY, deep_update

from segbalance.config import TrainConfig, validate_config
from segbalance.errors import TrainingError
from segbalance.train import train

from ._runs import same_weights, weights
from .conftest import record

BASE = deep_update(
    TINY,
    {
        "data": {"batches_per_epoch": 1},
        "optimizer": {"lr": 0.01, "sam": {"variant": "sam"}},
        "schedule": {"name": "constant"},
        "validation": {"every_epochs": 1000, "final_evaluation": False},
    },
)
_TALLY = {"trials": 0, "faults": 0, "failures": 0}


def _config(tmp_path, name: str, steps: int, **changes):
    raw = deep_update(BASE, {"budget": {"steps": steps, "epochs": None}, **changes})
    raw["output"] = str(tmp_path / name)
    return validate_config(raw, TrainConfig, "numerical")


def _finite_checkpoint(path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)
    tensors = [v for v in state["model"].values() if v.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _nan_patch_loader(monkeypatch, at_batch: int, value: float) -> None:
    """Batch number ``at_batch`` (1-based, over the run) gets ``value`` in one voxel."""
    import segbalance.data as data

    class Faulty(data.PatchLoader):
        def batch(self, index: int):
            out = super().batch(index)
            if index + 1 == at_batch:
                image = out[0].clone()
                image.view(-1)[len(image.view(-1)) // 2] = value
                out = (image, *out[1:])
            return out

    monkeypatch.setattr(data, "PatchLoader", Faulty)


def _bad_gradient(monkeypatch, at_backward: int, value: float) -> None:
    """The ``at_backward``-th backward pass gets ``value`` in one gradient entry."""
    import segbalance.train.loop as loop

    real = loop.build_network
    calls = {"n": 0}

    def build(cfg, info):
        model, report = real(cfg, info)
        param = next(p for p in model.parameters() if p.requires_grad)

        def hook(grad):
            calls["n"] += 1
            if calls["n"] == at_backward:
                grad = grad.clone()
                grad.view(-1)[0] = value
            return grad

        param.register_hook(hook)
        return model, report

    monkeypatch.setattr(loop, "build_network", build)


@pytest.fixture(scope="module")
def reference_3_steps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("numref")
    train(_config(tmp, "ref3", 3), progress=False)
    return weights(tmp / "ref3" / "checkpoint_last.pt")


def _tally(ok: bool) -> None:
    _TALLY["trials"] += 1
    _TALLY["faults"] += 1
    _TALLY["failures"] += not ok


@pytest.mark.parametrize(
    ("where", "value"),
    [("first", math.inf), ("first", math.nan), ("second", math.inf), ("second", -math.inf)],
)
def test_nonfinite_gradient_skips_the_step_and_never_perturbs(
    where, value, tmp_path, monkeypatch, reference_3_steps
) -> None:
    # step 4's first pass is backward 7, its second pass (at w + e) backward 8
    _bad_gradient(monkeypatch, 7 if where == "first" else 8, value)
    result = train(_config(tmp_path, "run", 4), progress=False)
    got = weights(tmp_path / "run" / "checkpoint_last.pt")
    ok = (
        result.step == 4
        and result.counters["overflow"] == 1  # counted as a skipped (non-finite) step
        and same_weights(got, reference_3_steps)  # no perturbation left, no base step
        and _finite_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    )
    _tally(ok)
    assert ok, (result.counters, where, value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_input_with_skip_policy(value, tmp_path, monkeypatch, reference_3_steps) -> None:
    _nan_patch_loader(monkeypatch, at_batch=4, value=value)
    cfg = _config(tmp_path, "run", 4, on_nonfinite="skip")
    result = train(cfg, progress=False)
    got = weights(tmp_path / "run" / "checkpoint_last.pt")
    ok = (
        result.counters["nonfinite"] == 1
        and same_weights(got, reference_3_steps)
        and _finite_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    )
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    ok = ok and log[-1].split(",")[log[0].split(",").index("skipped_nonfinite")] == "1"
    _tally(ok)
    assert ok, result.counters


def test_nonfinite_input_with_stop_policy_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, reference_3_steps
) -> None:
    _nan_patch_loader(monkeypatch, at_batch=4, value=math.nan)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 4") as info:
        train(_config(tmp_path, "run", 6), progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    ok = (
        state["step"] == 3
        and same_weights(state["model"], reference_3_steps)
        and _finite_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
        and "\n" not in str(info.value)
    )
    _tally(ok)
    assert ok


def test_stop_policy_through_the_cli_exits_1_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    import sys

    import yaml

    from segbalance.cli import main

    _nan_patch_loader(monkeypatch, at_batch=2, value=math.inf)
    raw = deep_update(BASE, {"budget": {"steps": 3, "epochs": None}})
    raw["output"] = str(tmp_path / "run")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(sys, "argv", ["segbalance", "train", str(tmp_path / "c.yaml"), "--quiet"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    ok = info.value.code == 1 and len(err) == 1 and "at step 2" in err[0]
    ok = ok and _finite_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    _tally(ok)
    assert ok, err


def test_sam_first_step_with_a_nan_gradient_does_not_perturb() -> None:
    from segbalance.optim import SAM

    model = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    model.weight.grad[0, 0] = math.nan
    with pytest.warns(RuntimeWarning, match="non-finite gradient norm"):
        opt.first_step(zero_grad=True)
    assert same_weights(model.state_dict(), before)


def test_zz_record_numerical() -> None:
    """Runs last in this module: the category's figures."""
    record("numerical", _TALLY["trials"], _TALLY["faults"], _TALLY["failures"])
