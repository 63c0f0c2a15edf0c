"""load_segvol_checkpoint: the published file variants and the adapter's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from segbalance.errors import InputError
from segbalance.models import load_pretrained, load_segvol_checkpoint

from ._helpers import TINY, Payload, published_state, tiny_image, tiny_segvol


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_round_trip_through_published_names(tmp_path: Path) -> None:
    source, target = tiny_segvol(0), tiny_segvol(1)
    image = tiny_image()
    assert not torch.allclose(source(image), target(image))
    text_keys = {
        "module.text_encoder.clip_text_model.text_model.final_layer_norm.weight": torch.ones(5),
        "module.text_encoder.dim_align.weight": torch.zeros(32, 5),
    }
    ckpt = {"model": published_state(source) | text_keys, "epoch": 3}
    torch.save(ckpt, tmp_path / "SegVol_v1.pth")
    report = load_segvol_checkpoint(target, tmp_path / "SegVol_v1.pth")
    assert torch.equal(source(image), target(image))
    cross = sorted(k for k in source.state_dict() if ".norm_cross_attn." in k)
    assert len(cross) == 4 and sorted(report.missing) == cross  # tolerated, reported
    assert sorted(report.skipped) == sorted(k.removeprefix("module.") for k in text_keys)
    assert report.unexpected == [] and report.shape_mismatched == []
    assert len(report.matched) == len(source.state_dict()) - 4
    # load_pretrained dispatches SegVol models to the adapter.
    third = tiny_segvol(2)
    assert load_pretrained(third, tmp_path / "SegVol_v1.pth").as_dict() == report.as_dict()
    assert torch.equal(third(image), source(image))


def test_huggingface_model_prefix(tmp_path: Path) -> None:
    source, target = tiny_segvol(0), tiny_segvol(1)
    state = {"model." + k.removeprefix("module."): v for k, v in published_state(source).items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    report = load_segvol_checkpoint(target, tmp_path / "pytorch_model.bin")
    image = tiny_image()
    assert torch.equal(source(image), target(image)) and report.skipped == []


def test_vit_pretrain_loads_encoder_only(tmp_path: Path) -> None:
    source, target = tiny_segvol(0), tiny_segvol(1)
    before = _snapshot(target)
    encoder = {
        "model.encoder." + k: v
        for k, v in source.image_encoder.state_dict().items()
        if "norm_cross_attn" not in k
    }
    simmim_head = {"model.decoder.0.weight": torch.zeros(3, 3)}
    torch.save({"state_dict": encoder | simmim_head, "epoch": 2000}, tmp_path / "ViT_pretrain.ckpt")
    report = load_segvol_checkpoint(target, tmp_path / "ViT_pretrain.ckpt")
    after = target.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("image_encoder.") and "norm_cross_attn" not in key:
            assert torch.equal(after[key], value), key
        elif not key.startswith("image_encoder."):
            assert torch.equal(after[key], before[key]), key  # decoders untouched
    assert report.skipped == ["model.decoder.0.weight"]
    decoder_keys = [k for k in before if k.startswith(("prompt_encoder.", "mask_decoder."))]
    assert set(decoder_keys) < set(report.missing)
    assert len(report.matched) == len(encoder)


def test_refusals_leave_the_model_untouched(tmp_path: Path) -> None:
    source, target = tiny_segvol(0), tiny_segvol(1)
    before = _snapshot(target)
    full = published_state(source)

    cases = {
        "outside.pth": (
            full | {"module.decoder_head.weight": torch.zeros(1)},
            "outside SegVol's four parts",
        ),
        "missing.pth": (
            {k: v for k, v in full.items() if k != "module.mask_decoder.iou_token.weight"},
            r"mask_decoder: missing \['iou_token.weight'\]",
        ),
        "extra.pth": (
            full | {"module.prompt_encoder.extra.weight": torch.zeros(1)},
            r"prompt_encoder: missing \[\], unexpected \['extra.weight'\]",
        ),
        "encoder_missing.pth": (
            {k: v for k, v in full.items() if k != "module.image_encoder.norm.weight"},
            r"image_encoder: missing \['norm.weight'\]",
        ),
    }
    for name, (state, message) in cases.items():
        torch.save({"model": state}, tmp_path / name)
        with pytest.raises(InputError, match=message):
            load_segvol_checkpoint(target, tmp_path / name)
    bigger = tiny_segvol(0, img_size=(8, 32, 16))  # 2 x 4 x 2 tokens instead of 2 x 2 x 2
    torch.save({"model": published_state(bigger)}, tmp_path / "other_size.pth")
    with pytest.raises(InputError, match=r"position_embeddings', \(1, 16, 32\), \(1, 8, 32\)"):
        load_segvol_checkpoint(target, tmp_path / "other_size.pth")
    after = target.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = {"model": published_state(tiny_segvol(0)), "epoch": 3, "args": Payload(str(marker))}
    torch.save(ckpt, tmp_path / "SegVol_v1.pth")
    with pytest.raises(InputError, match=r"refused by torch.load\(weights_only=True\)"):
        load_segvol_checkpoint(tiny_segvol(1), tmp_path / "SegVol_v1.pth")
    assert not marker.exists()


class FakeTextEncoder(nn.Module):
    """Same names as upstream's TextEncoder (clip_text_model.*, dim_align.*), tiny."""

    def __init__(self) -> None:
        super().__init__()
        self.clip_text_model = nn.Module()
        self.clip_text_model.text_model = nn.Linear(2, 3)
        self.dim_align = nn.Linear(3, TINY["hidden_size"])


def test_text_encoder_weights_load_when_the_model_has_one(tmp_path: Path) -> None:
    source, target = tiny_segvol(0), tiny_segvol(1)
    source.text_encoder, target.text_encoder = FakeTextEncoder(), FakeTextEncoder()
    state = published_state(source)
    # Older transformers versions saved a constant position_ids buffer; it is skipped.
    position_ids = "module.text_encoder.clip_text_model.text_model.embeddings.position_ids"
    state[position_ids] = torch.arange(4)
    torch.save({"model": state}, tmp_path / "w.pth")
    report = load_segvol_checkpoint(target, tmp_path / "w.pth")
    assert torch.equal(target.text_encoder.dim_align.weight, source.text_encoder.dim_align.weight)
    assert report.skipped == [position_ids.removeprefix("module.")] and report.unexpected == []
    del state["module.text_encoder.dim_align.bias"]
    torch.save({"model": state}, tmp_path / "w2.pth")
    with pytest.raises(InputError, match=r"text_encoder: missing \['dim_align.bias'\]"):
        load_segvol_checkpoint(target, tmp_path / "w2.pth")
