"""SegVol's image encoder: MONAI's ``ViT`` with a perceptron patch embedding.

Upstream (``build_sam.py``) passes ``pos_embed="perceptron"`` (MONAI 0.9); that argument
became ``proj_type`` in MONAI 1.2 and the old name was removed in 1.4. The key layout is
unchanged: ``patch_embedding.position_embeddings``, ``patch_embedding.patch_embeddings.1``
(rearrange + linear), ``blocks.{i}.{norm1,attn.qkv,attn.out_proj,norm2,mlp.linear1,
mlp.linear2}``, ``norm``. MONAI >= 1.4 adds ``blocks.{i}.norm_cross_attn`` (unused here).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def embedding_grid(img_size: Sequence[int], patch_size: Sequence[int]) -> tuple[int, int, int]:
    """``img_size / patch_size`` per axis; each axis must divide exactly."""
    if len(img_size) != 3 or len(patch_size) != 3:
        raise ValueError(
            f"Expected 3D img_size and patch_size but got {list(img_size)} and {list(patch_size)}"
        )
    if any(i % p or i < p for i, p in zip(img_size, patch_size, strict=True)):
        raise ValueError(
            f"Expected img_size {list(img_size)} to be a multiple of patch_size "
            f"{list(patch_size)} on every axis"
        )
    g0, g1, g2 = (i // p for i, p in zip(img_size, patch_size, strict=True))
    return g0, g1, g2


def build_image_encoder(
    img_size: Sequence[int],
    patch_size: Sequence[int],
    hidden_size: int,
    mlp_dim: int,
    num_layers: int,
    num_heads: int,
    in_channels: int = 1,
) -> nn.Module:
    """MONAI ``ViT(proj_type="perceptron", classification=False, dropout_rate=0)``.

    Its forward maps ``(B, in_channels, *img_size)`` to ``(tokens (B, prod(grid),
    hidden_size), hidden states)``; see :func:`tokens_to_grid`.
    """
    from monai.networks.nets import ViT

    return ViT(
        in_channels=in_channels,
        img_size=tuple(img_size),
        patch_size=tuple(patch_size),
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        proj_type="perceptron",
        classification=False,
        dropout_rate=0.0,
    )


def tokens_to_grid(tokens: Tensor, grid: Sequence[int]) -> Tensor:
    """``(B, prod(grid), C)`` tokens (row-major over the grid) -> ``(B, C, *grid)``."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, *grid)
