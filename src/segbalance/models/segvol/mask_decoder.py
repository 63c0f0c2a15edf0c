"""SegVol's 3D mask decoder (``segment_anything_volumetric/modeling/mask_decoder.py``, ViT
branch): two-way transformer, 4 mask tokens + IoU token, transposed-conv upscaling x4,
hypernetwork MLPs, and the text-similarity map added to the mask logits.

Parameter names follow the checkpoint: ``transformer.*``, ``iou_token``, ``mask_tokens``,
``output_upscaling.{0,1,3}``, ``output_hypernetworks_mlps.{i}.layers.{j}``,
``iou_prediction_head.layers.{j}``, ``txt_align_upscaled_embedding``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbalance.models.segvol.transformer import TwoWayTransformer

NUM_MULTIMASK_OUTPUTS = 3
IOU_HEAD_DEPTH = 3
IOU_HEAD_HIDDEN = 256


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (SAM/MaskFormer's ``MLP``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder3D(nn.Module):
    """Predicts low-resolution mask logits from image and prompt embeddings.

    Args:
        transformer_dim: token width C (768 in SegVol).
        embedding_size: encoder grid ``(g0, g1, g2)``; the logits come out at ``4 * grid``.
        mlp_dim, num_heads, depth: two-way transformer settings (2048, 8, 2 in SegVol).
    """

    def __init__(
        self,
        transformer_dim: int,
        embedding_size: Sequence[int],
        mlp_dim: int = 2048,
        num_heads: int = 8,
        depth: int = 2,
    ) -> None:
        super().__init__()
        if transformer_dim % 8:
            raise ValueError(f"Expected transformer_dim divisible by 8 but got {transformer_dim}")
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(depth, transformer_dim, num_heads, mlp_dim)
        self.num_mask_tokens = NUM_MULTIMASK_OUTPUTS + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        upscaled_grid = [2 * int(s) for s in embedding_size]
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            # Upstream normalises over channels *and* space, so the shape is fixed by img_size.
            nn.LayerNorm((transformer_dim // 4, *upscaled_grid)),
            nn.GELU(),
            nn.ConvTranspose3d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, IOU_HEAD_HIDDEN, self.num_mask_tokens, IOU_HEAD_DEPTH
        )
        # The text embedding arrives at width C (CLIP's 512 -> C by the text encoder's dim_align).
        self.txt_align_upscaled_embedding = nn.Linear(transformer_dim, transformer_dim // 8)

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        text_embedding: Tensor | None = None,
    ) -> Tensor:
        """Mask logits of token 0 (``multimask_output=False``), ``(B, 1, *4 grid)``.

        Args:
            image_embeddings: ``(B, C, *grid)``.
            image_pe: ``(1, C, *grid)`` dense positional encoding.
            sparse_prompt_embeddings: ``(B, N, C)``, N may be 0.
            dense_prompt_embeddings: ``(B, C, *grid)``.
            text_embedding: ``(B, C)`` or ``None``.
        """
        batch = image_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings], dim=1
        )
        src = image_embeddings + dense_prompt_embeddings
        pos = image_pe.expand(batch, -1, -1, -1, -1)
        hidden, src = self.transformer(src, pos, tokens)
        # Only token 0 is used (multimask_output=False), so only its hypernetwork runs; the IoU
        # head and tokens 1-3 keep their parameters for the checkpoint layout.
        mask_token = hidden[:, 1, :]
        src = src.transpose(1, 2).reshape(image_embeddings.shape)
        upscaled = self.output_upscaling(src)
        b, c = upscaled.shape[:2]
        flat = upscaled.reshape(b, c, -1)
        hyper = self.output_hypernetworks_mlps[0](mask_token).unsqueeze(1)
        masks = (hyper @ flat).reshape(b, 1, *upscaled.shape[2:])
        if text_embedding is not None:
            text_down = self.txt_align_upscaled_embedding(text_embedding).unsqueeze(1)
            masks = masks + (text_down @ flat).reshape(b, 1, *upscaled.shape[2:])
        return masks
