"""SegVol's parameter names and shapes against the published layout, written out by hand
from BAAI-DCAI/SegVol (build_sam.py, modeling/{prompt_encoder,mask_decoder,transformer}.py,
network/model.py) and MONAI's ViT (METHODS §9.3)."""

from __future__ import annotations

import re

import torch

from segbalance.models import SegVol

from ._helpers import tiny_segvol


def _attention(prefix: str) -> list[str]:
    return [f"{prefix}.{p}_proj.{t}" for p in ("q", "k", "v", "out") for t in ("weight", "bias")]


def _wb(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias"]


def expected_keys(num_layers: int) -> set[str]:
    keys = [
        "image_encoder.patch_embedding.position_embeddings",
        *_wb("image_encoder.patch_embedding.patch_embeddings.1"),
        *_wb("image_encoder.norm"),
    ]
    for i in range(num_layers):
        block = f"image_encoder.blocks.{i}"
        keys += [f"{block}.attn.qkv.weight"]  # qkv_bias=False: no bias
        for name in ("norm1", "attn.out_proj", "norm2", "mlp.linear1", "mlp.linear2"):
            keys += _wb(f"{block}.{name}")
        keys += _wb(f"{block}.norm_cross_attn")  # MONAI >= 1.4 only
    pe = "prompt_encoder"
    keys += [f"{pe}.pe_layer.positional_encoding_gaussian_matrix"]
    keys += [f"{pe}.point_embeddings.{i}.weight" for i in range(4)]
    keys += [f"{pe}.not_a_point_embed.weight", f"{pe}.no_mask_embed.weight"]
    for i in (0, 1, 3, 4, 6):  # Conv2d, LayerNorm2d, GELU, Conv2d, LayerNorm2d, GELU, Conv2d
        keys += _wb(f"{pe}.mask_downscaling.{i}")
    md = "mask_decoder"
    for i in range(2):  # TwoWayTransformer(depth=2)
        layer = f"{md}.transformer.layers.{i}"
        keys += _attention(f"{layer}.self_attn")
        keys += _attention(f"{layer}.cross_attn_token_to_image")
        keys += _attention(f"{layer}.cross_attn_image_to_token")
        keys += _wb(f"{layer}.mlp.lin1") + _wb(f"{layer}.mlp.lin2")
        for n in range(1, 5):
            keys += _wb(f"{layer}.norm{n}")
    keys += _attention(f"{md}.transformer.final_attn_token_to_image")
    keys += _wb(f"{md}.transformer.norm_final_attn")
    keys += [f"{md}.iou_token.weight", f"{md}.mask_tokens.weight"]
    for i in (0, 1, 3):  # ConvTranspose3d, LayerNorm, GELU, ConvTranspose3d, GELU
        keys += _wb(f"{md}.output_upscaling.{i}")
    for m in range(4):  # 3 multimask outputs + 1
        for j in range(3):
            keys += _wb(f"{md}.output_hypernetworks_mlps.{m}.layers.{j}")
    for j in range(3):
        keys += _wb(f"{md}.iou_prediction_head.layers.{j}")
    keys += _wb(f"{md}.txt_align_upscaled_embedding")
    return set(keys)


def test_tiny_key_set_equals_published_layout() -> None:
    model = tiny_segvol()
    assert set(model.state_dict()) == expected_keys(num_layers=2)


def test_key_patterns_do_not_depend_on_size() -> None:
    def patterns(keys: set[str]) -> set[str]:
        return {re.sub(r"blocks\.\d+\.", "blocks.N.", k) for k in keys}

    full = patterns(expected_keys(num_layers=12))
    assert patterns(set(tiny_segvol().state_dict())) == full


def test_published_shapes_on_meta_device() -> None:
    # Default SegVol (img 32x256x256, patch 4x16x16, width 768): shapes by hand from METHODS §9.1.
    with torch.device("meta"):
        model = SegVol()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(shapes) == expected_keys(num_layers=12)
    expected = {
        "image_encoder.patch_embedding.position_embeddings": (1, 2048, 768),  # 8*16*16 tokens
        "image_encoder.patch_embedding.patch_embeddings.1.weight": (768, 4 * 16 * 16),
        "image_encoder.blocks.11.attn.qkv.weight": (3 * 768, 768),
        "image_encoder.blocks.0.mlp.linear1.weight": (3072, 768),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (3, 384),
        "prompt_encoder.point_embeddings.3.weight": (1, 768),
        "prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2),
        "prompt_encoder.mask_downscaling.6.weight": (768, 16, 1, 1),
        "mask_decoder.transformer.layers.0.self_attn.q_proj.weight": (768, 768),
        "mask_decoder.transformer.layers.1.cross_attn_token_to_image.q_proj.weight": (384, 768),
        "mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj.weight": (768, 384),
        "mask_decoder.transformer.layers.0.mlp.lin1.weight": (2048, 768),
        "mask_decoder.iou_token.weight": (1, 768),
        "mask_decoder.mask_tokens.weight": (4, 768),
        "mask_decoder.output_upscaling.0.weight": (768, 192, 2, 2, 2),
        "mask_decoder.output_upscaling.1.weight": (192, 16, 32, 32),
        "mask_decoder.output_upscaling.3.weight": (192, 96, 2, 2, 2),
        "mask_decoder.output_hypernetworks_mlps.0.layers.2.weight": (96, 768),
        "mask_decoder.iou_prediction_head.layers.0.weight": (256, 768),
        "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
        "mask_decoder.txt_align_upscaled_embedding.weight": (96, 768),
    }
    assert {k: shapes[k] for k in expected} == expected
