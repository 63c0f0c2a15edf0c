"""load_pretrained / LoadReport, freeze, parameter_groups (with every optimiser variant)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from segbalance.errors import InputError
from segbalance.models import LoadReport, build_model, freeze, load_pretrained, parameter_groups
from segbalance.optim import SAM_VARIANTS, build_optimizer

from ._helpers import Payload


def small_unet(seed: int, out_channels: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "unet",
        in_channels=1,
        out_channels=out_channels,
        patch_size=(8, 8, 8),
        channels=(4, 8),
        strides=(2,),
        num_res_units=0,
    ).eval()


def test_round_trip_through_module_prefix(tmp_path: Path) -> None:
    source, target = small_unet(0), small_unet(1)
    x = torch.randn(1, 1, 8, 8, 8)
    assert not torch.equal(source(x), target(x))
    ckpt = {"model": {"module." + k: v for k, v in source.state_dict().items()}, "epoch": 3}
    torch.save(ckpt, tmp_path / "w.pt")
    report = load_pretrained(target, tmp_path / "w.pt")
    assert isinstance(report, LoadReport)
    assert sorted(report.matched) == sorted(source.state_dict())
    assert report.missing == report.unexpected == report.shape_mismatched == []
    assert torch.equal(source(x), target(x))


def test_network_own_model_prefix_is_not_stripped(tmp_path: Path) -> None:
    # MONAI's UNet names start with "model."; a blind strip of "model." would break them.
    source, target = small_unet(0), small_unet(1)
    assert all(k.startswith("model.") for k in source.state_dict())
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    report = load_pretrained(target, tmp_path / "plain.pt", strict=True)
    assert len(report.matched) == len(source.state_dict())
    torch.save(
        {"state_dict": {"model." + k: v for k, v in source.state_dict().items()}},
        tmp_path / "hf.pt",
    )
    report = load_pretrained(small_unet(2), tmp_path / "hf.pt", strict=True)
    assert len(report.matched) == len(source.state_dict())


def test_mismatch_report_and_strict(tmp_path: Path) -> None:
    source, target = small_unet(0, out_channels=3), small_unet(1, out_channels=2)
    state = dict(source.state_dict())
    dropped = next(iter(state))
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "w.pt")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="strict=True"):
        load_pretrained(target, tmp_path / "w.pt", strict=True)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())

    report = load_pretrained(target, tmp_path / "w.pt")
    model_shapes = {k: tuple(v.shape) for k, v in before.items()}
    # Hand-derived expectation: tensors whose shape involves out_channels differ.
    expected_mismatch = sorted(
        (k, tuple(v.shape), model_shapes[k])
        for k, v in state.items()
        if k in model_shapes and tuple(v.shape) != model_shapes[k]
    )
    assert expected_mismatch and sorted(report.shape_mismatched) == expected_mismatch
    assert report.missing == [dropped] and report.unexpected == ["extra.weight"]
    after = target.state_dict()
    for name, _, _ in report.shape_mismatched:  # never loaded
        assert torch.equal(after[name], before[name])
    for name in report.matched:
        assert torch.equal(after[name], state[name])
    assert torch.equal(after[dropped], before[dropped])
    n_model = len(before)
    assert report.summary() == (
        f"{tmp_path / 'w.pt'}: loaded {n_model - 1 - len(expected_mismatch)}/{n_model} model "
        f"tensors; 1 missing, 1 unexpected, {len(expected_mismatch)} shape-mismatched, 0 skipped"
    )
    as_dict = json.loads(json.dumps(report.as_dict()))
    first = report.shape_mismatched[0]
    assert as_dict["shape_mismatched"][0] == [first[0], list(first[1]), list(first[2])]


def test_key_option(tmp_path: Path) -> None:
    source, target = small_unet(0), small_unet(1)
    torch.save({"ema": source.state_dict(), "step": 7}, tmp_path / "w.pt")
    with pytest.raises(InputError, match=r"not tensors.*key="):
        load_pretrained(target, tmp_path / "w.pt")
    with pytest.raises(InputError, match=r"no key 'emma'.*did you mean 'ema'"):
        load_pretrained(target, tmp_path / "w.pt", key="emma")
    report = load_pretrained(target, tmp_path / "w.pt", key="ema", strict=True)
    assert len(report.matched) == len(source.state_dict())


def test_bad_files(tmp_path: Path) -> None:
    target = small_unet(0)
    with pytest.raises(InputError, match=r"nothere\.pt: checkpoint file not found"):
        load_pretrained(target, tmp_path / "nothere.pt")
    good = tmp_path / "good.pt"
    torch.save(target.state_dict(), good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cut\.pt: cannot be read as a torch checkpoint"):
        load_pretrained(target, tmp_path / "cut.pt")


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save(
        {"model": small_unet(0).state_dict(), "hook": Payload(str(marker))}, tmp_path / "evil.pt"
    )
    with pytest.raises(
        InputError, match=r"evil\.pt: refused by torch.load\(weights_only=True\)"
    ) as info:
        load_pretrained(small_unet(1), tmp_path / "evil.pt")
    assert info.value.expected == "a checkpoint of plain tensors"
    assert not marker.exists()


class Parts(nn.Module):
    """encoder (Linear 3->4 + LayerNorm), decoder (Linear 4->2)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
        self.decoder = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def test_freeze_patterns() -> None:
    model = Parts()
    assert freeze(model, ["encoder"]) == 4  # encoder.0.{weight,bias}, encoder.1.{weight,bias}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["decoder.weight", "decoder.bias"]
    model = Parts()
    assert freeze(model, ["*.bias", "encoder.1.*"]) == 4  # 3 biases + encoder.1.weight
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "encoder.0.weight",
        "decoder.weight",
    ]
    with pytest.raises(
        ValueError, match=r"'encodr'.*did you mean 'encoder'.*\['encoder', 'decoder'\]"
    ):
        freeze(Parts(), ["encodr"])


def test_parameter_groups_first_match_wins_and_frozen_left_out() -> None:
    model = Parts()
    model.decoder.bias.requires_grad_(False)
    groups = parameter_groups(model, 1e-3, {"encoder.1": 1e-5, "encoder": 1e-4, "*.bias": 0.5})
    assert [(g["name"], g["lr"], g["param_names"]) for g in groups] == [
        ("encoder.1", 1e-5, ["encoder.1.weight", "encoder.1.bias"]),
        ("encoder", 1e-4, ["encoder.0.weight", "encoder.0.bias"]),
        ("default", 1e-3, ["decoder.weight"]),
    ]  # "*.bias" only matched claimed or frozen tensors: its empty group is dropped
    assert groups[2]["params"][0] is model.decoder.weight
    with pytest.raises(ValueError, match=r"part_lrs pattern 'decodr'.*did you mean 'decoder'"):
        parameter_groups(model, 1e-3, {"decodr": 1e-4})


def test_per_group_lr_one_adamw_step_by_hand() -> None:
    model = Parts()
    lrs = {"encoder": 0.01, "default": 0.1}
    opt = torch.optim.AdamW(
        parameter_groups(model, lrs["default"], {"encoder": 0.01}), weight_decay=0.1
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(5, 3)).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    eps = 1e-8
    for name, param in model.named_parameters():
        lr = lrs["encoder" if name.startswith("encoder") else "default"]
        g, w = grads[name], before[name]
        # AdamW step 1: w (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps), m_hat = g, v_hat = g^2.
        expected = w * (1 - lr * 0.1) - lr * g / (g.abs() + eps)
        torch.testing.assert_close(param.detach(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", list(SAM_VARIANTS))
def test_groups_work_with_every_optimizer_variant(variant: str) -> None:
    model = Parts()
    groups = parameter_groups(model, 0.1, {"encoder": 0.001})
    opt = build_optimizer(groups, name="adamw", lr=0.1, sam_variant=variant)
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [
        ("encoder", 0.001),
        ("default", 0.1),
    ]
    assert opt.param_groups[0]["param_names"][0] == "encoder.0.weight"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(6, 3)

    def closure() -> torch.Tensor:
        loss = model(x).square().sum()
        loss.backward()
        return loss

    closure()
    if variant == "none":
        opt.step()
    else:
        opt.step(closure)
    for name, param in model.named_parameters():
        lr = 0.001 if name.startswith("encoder") else 0.1
        # Adam's first step moves every coordinate with a non-tiny gradient by ~lr.
        moved = (param.detach() - before[name]).abs().max().item()
        assert math.isclose(moved, lr, rel_tol=1e-3), (name, moved, lr)


def test_asam_sees_names_from_groups() -> None:
    # A 1-D tensor named "...weight" is scaled by ASAM (T = |w| + eta) only if the optimiser
    # knows its name (unnamed 1-D tensors count as biases): the groups must carry names.
    norm = nn.LayerNorm(2)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([2.0, -1.0]))
        norm.bias.copy_(torch.tensor([0.5, 0.5]))
    opt = build_optimizer(parameter_groups(norm, 0.1), sam_variant="asam", rho=0.5)
    norm.weight.grad = torch.tensor([1.0, 1.0])
    norm.bias.grad = torch.tensor([1.0, 1.0])
    opt.first_step()
    t_w = torch.tensor([2.01, 1.01])  # |w| + 0.01
    denom = torch.sqrt((t_w * 1.0).square().sum() + 2.0)  # ||(T_w g_w, g_b)||
    torch.testing.assert_close(
        norm.weight.detach() - torch.tensor([2.0, -1.0]), 0.5 * t_w**2 / denom
    )
    torch.testing.assert_close(norm.bias.detach() - 0.5, 0.5 * torch.ones(2) / denom)
