"""SegVol forward: shapes, prompts, gradients, text option, and its pieces by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segbalance.errors import InputError
from segbalance.models import SegVol
from segbalance.models.segvol import boxes_from_label, points_from_label, text_encoder
from segbalance.models.segvol.prompt_encoder import PositionEmbeddingRandom3D
from segbalance.models.segvol.transformer import Attention

from ._helpers import TINY, tiny_image, tiny_segvol


def test_output_shape_and_input_size_check() -> None:
    model = tiny_segvol()
    assert model(tiny_image()).shape == (2, 1, 8, 16, 16)
    assert model.wants_label_prompts is False
    with pytest.raises(ValueError, match=r"Expected input spatial size \[8, 16, 16\].*but got"):
        model(torch.randn(1, 1, 8, 16, 8))


def test_box_and_point_prompts_change_the_output() -> None:
    model, image = tiny_segvol(), tiny_image(batch=1)
    plain = model(image)
    boxed = model(image, boxes=torch.tensor([[1.0, 2.0, 3.0, 5.0, 9.0, 12.0]]))
    assert boxed.shape == plain.shape and not torch.allclose(boxed, plain)
    other_box = model(image, boxes=torch.tensor([[0.0, 0.0, 0.0, 2.0, 3.0, 3.0]]))
    assert not torch.allclose(other_box, boxed)
    points = (torch.tensor([[[3.0, 5.0, 7.0]]]), torch.tensor([[1.0]]))
    assert not torch.allclose(model(image, points=points), plain)


def test_label_prompt_modes() -> None:
    label = torch.zeros(2, 1, 8, 16, 16)
    label[0, 0, 2:5, 3:7, 4:9] = 1
    label[1, 0, 6, 10, 11] = 1
    image = tiny_image()
    for mode, explicit in (
        ("box", {"boxes": boxes_from_label(label)}),
        ("points", {"points": points_from_label(label)}),
    ):
        model = tiny_segvol(prompt=mode)
        assert model.wants_label_prompts is True
        torch.testing.assert_close(model(image, label=label), model(image, **explicit))
        assert not torch.allclose(model(image, label=label), model(image, label=label.flip(2)))
        with pytest.raises(ValueError, match=f"prompt='{mode}'.*label=label"):
            model(image)
    with pytest.raises(ValueError, match="Expected prompt in"):
        SegVol(**(TINY | {"prompt": "mask"}))


def test_gradients_reach_every_part_without_prompt() -> None:
    model = tiny_segvol().train()
    model(tiny_image()).sigmoid().mean().backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()}
    # Unused without prompts, by construction of SAM/SegVol (hand-listed): point/box
    # embeddings, the 2D mask branch, mask tokens 1-3's hypernetworks, the IoU head and
    # the text alignment.
    unused_prefixes = (
        "prompt_encoder.point_embeddings.",
        "prompt_encoder.not_a_point_embed.",
        "prompt_encoder.mask_downscaling.",
        "mask_decoder.output_hypernetworks_mlps.1.",
        "mask_decoder.output_hypernetworks_mlps.2.",
        "mask_decoder.output_hypernetworks_mlps.3.",
        "mask_decoder.iou_prediction_head.",
        "mask_decoder.txt_align_upscaled_embedding.",
        # MONAI >= 1.4 creates these norms; no cross-attention in SegVol's encoder.
        "image_encoder.blocks.0.norm_cross_attn.",
        "image_encoder.blocks.1.norm_cross_attn.",
    )
    assert no_grad == {n for n, _ in model.named_parameters() if n.startswith(unused_prefixes)}
    for part in ("image_encoder.", "prompt_encoder.no_mask_embed", "mask_decoder.transformer."):
        assert any(n.startswith(part) for n, _ in model.named_parameters() if n not in no_grad)


def test_boxes_from_label_by_hand() -> None:
    label = torch.zeros(2, 1, 4, 5, 6)
    label[0, 0, 1, 2, 3] = 1
    label[0, 0, 2, 4, 1] = 1
    label[0, 0, 3, 0, 5] = 255  # an ignore_index value is not foreground
    expected = torch.tensor([[1.0, 2.0, 1.0, 2.0, 4.0, 3.0], [0.0, 0.0, 0.0, 3.0, 4.0, 5.0]])
    torch.testing.assert_close(boxes_from_label(label), expected)  # empty -> whole volume


def test_points_from_label_by_hand() -> None:
    label = torch.zeros(3, 7, 7, 7)
    label[0, 2:5, 2:5, 2:5] = 1  # centroid (3, 3, 3) is a foreground voxel
    label[0, 1, 3, 3] = 255  # ignored, not background: the negative moves on to (3, 1, 3)
    label[1] = 1  # no background
    coords, labels = points_from_label(label)
    # Nearest background voxels to (3, 3, 3) are at distance 2; in row-major order the
    # first is (1, 3, 3), which is ignored, so (3, 1, 3).
    torch.testing.assert_close(coords[0], torch.tensor([[3.0, 3.0, 3.0], [3.0, 1.0, 3.0]]))
    torch.testing.assert_close(labels[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(labels[1], torch.tensor([1.0, -1.0]))
    # Empty sample: no positive (padding), a background click at the volume centre.
    torch.testing.assert_close(coords[2], torch.tensor([[0.0, 0.0, 0.0], [3.0, 3.0, 3.0]]))
    torch.testing.assert_close(labels[2], torch.tensor([-1.0, 0.0]))


def test_position_encoding_by_hand() -> None:
    torch.manual_seed(0)
    layer = PositionEmbeddingRandom3D(4)
    gauss = layer.positional_encoding_gaussian_matrix.numpy().astype(np.float64)

    def encode(c: np.ndarray) -> np.ndarray:
        f = 2 * math.pi * ((2 * c - 1) @ gauss)
        return np.concatenate([np.sin(f), np.cos(f)])

    coords = torch.tensor([[[1.0, 2.0, 3.0]]])
    size = (4, 8, 16)
    # Upstream divides coordinate 0 by size[1] and coordinate 1 by size[0].
    expected = encode(np.array([1 / 8, 2 / 4, 3 / 16]))
    np.testing.assert_allclose(layer.forward_with_coords(coords, size)[0, 0], expected, atol=1e-5)
    dense = layer((2, 3, 4))
    assert dense.shape == (8, 2, 3, 4)
    # Cell (i, j, k) encodes ((j + .5) / 3, (i + .5) / 2, (k + .5) / 4): upstream's x/y order.
    i, j, k = 1, 2, 0
    expected = encode(np.array([(j + 0.5) / 3, (i + 0.5) / 2, (k + 0.5) / 4]))
    np.testing.assert_allclose(dense[:, i, j, k], expected, atol=1e-5)


def test_attention_by_hand() -> None:
    torch.manual_seed(0)
    attn = Attention(8, num_heads=2, downsample_rate=2).double()
    q, k = torch.randn(1, 3, 8).double(), torch.randn(1, 5, 8).double()
    v = torch.randn(1, 5, 8).double()
    out = attn(q, k, v).detach().numpy()[0]
    w = {n: p.detach().numpy() for n, p in attn.named_parameters()}
    qp = q[0].numpy() @ w["q_proj.weight"].T + w["q_proj.bias"]
    kp = k[0].numpy() @ w["k_proj.weight"].T + w["k_proj.bias"]
    vp = v[0].numpy() @ w["v_proj.weight"].T + w["v_proj.bias"]
    heads = []
    for h in range(2):  # internal width 4 -> 2 heads of 2
        sl = slice(2 * h, 2 * h + 2)
        scores = qp[:, sl] @ kp[:, sl].T / math.sqrt(2)
        weights = np.exp(scores - scores.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        heads.append(weights @ vp[:, sl])
    expected = np.concatenate(heads, 1) @ w["out_proj.weight"].T + w["out_proj.bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-10)


class FakeText(nn.Module):
    """Stands in for the CLIP text encoder: a fixed embedding per class name."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.dim_align = nn.Linear(3, width)

    def forward(self, names: list[str]) -> torch.Tensor:
        codes = torch.tensor([[len(n), n.count("e"), 1.0] for n in names])
        return self.dim_align(codes)


def test_text_prompt_path_with_a_stand_in_encoder() -> None:
    model = tiny_segvol()
    image = tiny_image()
    with pytest.raises(ValueError, match="text=True"):
        model(image, text="liver")
    model.text_encoder = FakeText(TINY["hidden_size"])
    plain = model(image)
    liver = model(image, text="liver")
    assert not torch.allclose(liver, plain)
    torch.testing.assert_close(model(image, text=["liver", "liver"]), liver)
    with pytest.raises(ValueError, match="Expected 2 text prompts"):
        model(image, text=["liver"])


def test_text_option_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="clip_dir"):
        SegVol(**(TINY | {"text": True}))
    with pytest.raises(InputError, match="CLIP tokenizer folder not found"):
        SegVol(**(TINY | {"text": True, "clip_dir": tmp_path / "missing"}))

    def no_transformers(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(text_encoder.importlib, "import_module", no_transformers)
    with pytest.raises(ImportError, match="optional 'transformers' package"):
        SegVol(**(TINY | {"text": True, "clip_dir": tmp_path}))
    with pytest.raises(ValueError, match="text_prompt needs text=True"):
        SegVol(**(TINY | {"text_prompt": "liver"}))
