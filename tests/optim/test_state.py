"""Checkpoints (METHODS §8.7): base moments saved, bit-identical resume, no copy of w."""

from __future__ import annotations

import io

import pytest
import torch

from segbalance.optim import SAM, LookSAM, PeriodicSAM, sam_step

from ._helpers import make_batch, make_mlp, mse


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # plain tensors and containers only


def _build(cls, model, **kw):
    return cls(model.named_parameters(), torch.optim.AdamW, lr=0.01, weight_decay=0.05, **kw)


def _train(model, opt, steps: range) -> None:
    for t in steps:
        sam_step(model, opt, mse, [make_batch(300 + t, 6)])


@pytest.mark.parametrize(
    ("cls", "kw"),
    [(SAM, {}), (SAM, {"adaptive": True}), (LookSAM, {"k": 3}), (PeriodicSAM, {"k": 2})],
    ids=["sam", "asam", "looksam", "sam_k"],
)
def test_resume_gives_bit_identical_steps(cls, kw) -> None:
    model = make_mlp(seed=11)
    opt = _build(cls, model, **kw)
    _train(model, opt, range(4))  # LookSAM k=3: step 3 is a refresh, so g_v is needed next
    checkpoint = _roundtrip({"model": model.state_dict(), "optimizer": opt.state_dict()})
    _train(model, opt, range(4, 7))

    resumed = make_mlp(seed=99)
    resumed.load_state_dict(checkpoint["model"])
    opt_resumed = _build(cls, resumed, **kw)
    opt_resumed.load_state_dict(checkpoint["optimizer"])
    assert opt_resumed.step_count == 4
    _train(resumed, opt_resumed, range(4, 7))
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_holds_base_moments_and_no_copy_of_w() -> None:
    model = make_mlp(seed=12)
    opt = _build(LookSAM, model, k=2)
    _train(model, opt, range(3))
    state = opt.state_dict()
    n_params = len(list(model.parameters()))
    assert sorted(state) == ["base", "sam"]
    assert len(state["base"]["state"]) == n_params
    for entry in state["base"]["state"].values():
        assert set(entry) == {"step", "exp_avg", "exp_avg_sq"}  # AdamW's moments
    group = state["base"]["param_groups"][0]
    assert group["rho"] == 0.05 and group["lr"] == 0.01 and group["adaptive"] is False
    assert group["param_names"][0] == "0.weight"
    assert set(state["sam"]) == {
        "variant",
        "step_count",
        "skipped_steps",
        "start_step",
        "k",
        "alpha",
        "looksam_global",
        "g_v",
    }
    assert state["sam"]["step_count"] == 3 and len(state["sam"]["g_v"]) == n_params


def test_looksam_resume_without_g_v_differs() -> None:
    """Negative control: the g_v buffers matter for the next steps."""
    model = make_mlp(seed=13)
    opt = _build(LookSAM, model, k=3)
    _train(model, opt, range(1))  # refresh at step 0
    checkpoint = _roundtrip({"model": model.state_dict(), "optimizer": opt.state_dict()})
    _train(model, opt, range(1, 3))
    checkpoint["optimizer"]["sam"]["g_v"] = {}
    resumed = make_mlp(seed=13)
    resumed.load_state_dict(checkpoint["model"])
    opt_resumed = _build(LookSAM, resumed, k=3)
    opt_resumed.load_state_dict(checkpoint["optimizer"])
    _train(resumed, opt_resumed, range(1, 3))
    assert not all(
        torch.equal(p, q) for p, q in zip(model.parameters(), resumed.parameters(), strict=True)
    )


def test_loading_a_plain_or_foreign_state_dict_is_a_clear_error() -> None:
    model = make_mlp()
    opt = _build(SAM, model)
    with pytest.raises(ValueError, match=r"keys \['base', 'sam'\]"):
        opt.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())
    looksam_state = _build(LookSAM, model).state_dict()
    with pytest.raises(ValueError, match="Expected a SAM state dict but got one from LookSAM"):
        opt.load_state_dict(looksam_state)
