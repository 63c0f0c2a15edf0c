"""SegVol's 3D prompt encoder (SAM's, volumetric; BAAI-DCAI/SegVol
``segment_anything_volumetric/modeling/prompt_encoder.py``).

Parameter names and shapes follow the published checkpoint: ``pe_layer.
positional_encoding_gaussian_matrix`` (3, embed_dim/2), ``point_embeddings.{0..3}``
(negative point, positive point, box corner 1, box corner 2), ``not_a_point_embed``,
``mask_downscaling.*`` (an unused 2D branch kept for the key layout) and ``no_mask_embed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# SegVol builds the (unused) mask branch with 16 hidden channels (build_sam.py).
MASK_IN_CHANNELS = 16


class LayerNorm2d(nn.Module):
    """Channel LayerNorm of a ``(B, C, H, W)`` map (SAM's ``common.LayerNorm2d``)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PositionEmbeddingRandom3D(nn.Module):
    """Random Fourier features of 3D positions: ``[sin(2 pi f), cos(2 pi f)]``,
    ``f = (2 c - 1) @ G`` with a fixed Gaussian ``G`` of shape ``(3, num_pos_feats)``."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, num_pos_feats))

    def _encode(self, coords: Tensor) -> Tensor:
        """``coords`` in [0, 1], shape ``(..., 3)`` -> ``(..., 2 * num_pos_feats)``."""
        matrix = self.positional_encoding_gaussian_matrix
        projected = 2 * math.pi * ((2 * coords - 1) @ matrix.to(coords.dtype))
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: Sequence[int]) -> Tensor:
        """Encoding of every cell centre of a grid ``size = (n0, n1, n2)`` ->
        ``(2 * num_pos_feats, n0, n1, n2)``."""
        n0, n1, n2 = (int(s) for s in size)
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((n0, n1, n2), device=device, dtype=torch.float32)
        along0 = (grid.cumsum(dim=0) - 0.5) / n0
        along1 = (grid.cumsum(dim=1) - 0.5) / n1
        along2 = (grid.cumsum(dim=2) - 0.5) / n2
        # Upstream stacks (axis 1, axis 0, axis 2), SAM's (x, y) habit; the weights expect it.
        encoding = self._encode(torch.stack([along1, along0, along2], dim=-1))
        return encoding.permute(3, 0, 1, 2)

    def forward_with_coords(self, coords: Tensor, image_size: Sequence[int]) -> Tensor:
        """Encode voxel coordinates ``(B, N, 3)`` (axis order of the image) -> ``(B, N, C)``.

        Normalisation copies upstream exactly, including its swap: coordinate 0 is divided
        by ``image_size[1]`` and coordinate 1 by ``image_size[0]``; the published weights
        were trained with it.
        """
        scale = torch.tensor(
            [image_size[1], image_size[0], image_size[2]], dtype=torch.float32, device=coords.device
        )
        return self._encode(coords.float() / scale)


class PromptEncoder3D(nn.Module):
    """Embeds point, box and text prompts into sparse tokens plus a dense embedding.

    Args:
        embed_dim: token width (the image encoder's hidden size).
        image_embedding_size: encoder grid, ``img_size / patch_size``.
        input_image_size: ``img_size``, the voxel frame of point and box coordinates.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Sequence[int],
        input_image_size: Sequence[int],
        mask_in_chans: int = MASK_IN_CHANNELS,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(int(s) for s in image_embedding_size)
        self.input_image_size = tuple(int(s) for s in input_image_size)
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        # Upstream keeps SAM's 2D mask branch; SegVol never feeds masks, so it is unused here.
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """Positional encoding of the encoder grid, ``(1, embed_dim, *grid)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, coords: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """Points ``(B, N, 3)`` with labels ``(B, N)`` (1 positive, 0 negative, -1 padding)."""
        coords = coords.float() + 0.5  # centre of the voxel
        labels = labels.to(coords.device)
        if pad:  # SAM appends one "not a point" when there is no box
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 3)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        padding = (labels == -1).unsqueeze(-1)
        embedding = torch.where(padding, self.not_a_point_embed.weight, embedding)
        embedding = embedding + (labels == 0).unsqueeze(-1) * self.point_embeddings[0].weight
        return embedding + (labels == 1).unsqueeze(-1) * self.point_embeddings[1].weight

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        """Boxes ``(B, 6)`` = (min0, min1, min2, max0, max1, max2) -> ``(B, 2, C)``."""
        corners = (boxes.float() + 0.5).reshape(-1, 2, 3)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        first = embedding[:, :1] + self.point_embeddings[2].weight
        second = embedding[:, 1:] + self.point_embeddings[3].weight
        return torch.cat([first, second], dim=1)

    def forward(
        self,
        batch_size: int,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        text_embedding: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``sparse (B, N_tokens, C)`` (N_tokens = 0 without prompts) and
        ``dense (B, C, *grid)`` (the "no mask" embedding everywhere)."""
        weight = self.no_mask_embed.weight
        sparse = weight.new_zeros(batch_size, 0, self.embed_dim)
        if points is not None:
            point_tokens = self._embed_points(points[0], points[1], pad=boxes is None)
            sparse = torch.cat([sparse, point_tokens], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if text_embedding is not None:
            sparse = torch.cat([sparse, text_embedding.unsqueeze(1)], dim=1)
        dense = weight.reshape(1, -1, 1, 1, 1).expand(batch_size, -1, *self.image_embedding_size)
        return sparse, dense
