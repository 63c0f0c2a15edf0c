"""SegVol (Du et al., NeurIPS 2024; BAAI-DCAI/SegVol) as a binary segmentation network.

Same submodules and parameter names as the published checkpoint (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``, optional ``text_encoder.*``), so
:func:`~segbalance.models.load_segvol_checkpoint` loads ``SegVol_v1.pth`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from segbalance.models.segvol.image_encoder import (
    build_image_encoder,
    embedding_grid,
    tokens_to_grid,
)
from segbalance.models.segvol.mask_decoder import MaskDecoder3D
from segbalance.models.segvol.prompt_encoder import PromptEncoder3D
from segbalance.models.segvol.prompts import boxes_from_label, points_from_label

PROMPT_MODES = ("none", "box", "points")


class SegVol(nn.Module):
    """SegVol: ViT image encoder, SAM-style 3D prompt encoder and mask decoder.

    ``forward(image)`` maps ``(B, in_channels, *img_size)`` to one binary logit map
    ``(B, 1, *img_size)``: mask token 0 (``multimask_output=False``), low-resolution logits
    ``(B, 1, *4 * grid)`` upsampled trilinearly (METHODS §9.1).

    Args:
        img_size: input window ``(D, H, W)``; inputs must have exactly this size.
        patch_size: ViT patch; ``img_size / patch_size`` is the token grid.
        hidden_size, mlp_dim, num_layers, num_heads: ViT settings (SegVol: 768/3072/12/12).
        decoder_mlp_dim, decoder_heads: two-way transformer settings (2048/8).
        in_channels: image channels (SegVol: 1, CT).
        text: build the text encoder (needs ``transformers`` and ``clip_dir``).
        prompt: ``"none"`` (default: the "no prompt" embeddings), or ``"box"`` / ``"points"``
            derived from ``label`` in ``forward`` (see :mod:`.prompts`); then
            ``wants_label_prompts`` is True and the trainer calls ``model(x, label=y)``.
        clip_dir: local CLIP tokenizer folder (``text=True`` only).
        text_prompt: class name used as the text prompt when ``forward`` gets no ``text``.
    """

    def __init__(
        self,
        img_size: Sequence[int] = (32, 256, 256),
        patch_size: Sequence[int] = (4, 16, 16),
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        decoder_mlp_dim: int = 2048,
        decoder_heads: int = 8,
        in_channels: int = 1,
        text: bool = False,
        prompt: Literal["none", "box", "points"] = "none",
        clip_dir: str | Path | None = None,
        text_prompt: str | None = None,
    ) -> None:
        super().__init__()
        if prompt not in PROMPT_MODES:
            raise ValueError(f"Expected prompt in {list(PROMPT_MODES)} but got {prompt!r}")
        if text_prompt is not None and not text:
            raise ValueError("text_prompt needs text=True")
        self.img_size = tuple(int(s) for s in img_size)
        self.patch_size = tuple(int(s) for s in patch_size)
        self.grid = embedding_grid(self.img_size, self.patch_size)
        self.prompt = prompt
        self.wants_label_prompts = prompt != "none"
        self.text_prompt = text_prompt
        self.image_encoder = build_image_encoder(
            self.img_size, self.patch_size, hidden_size, mlp_dim, num_layers, num_heads, in_channels
        )
        self.prompt_encoder = PromptEncoder3D(hidden_size, self.grid, self.img_size)
        self.mask_decoder = MaskDecoder3D(
            hidden_size, self.grid, mlp_dim=decoder_mlp_dim, num_heads=decoder_heads
        )
        if text:
            from segbalance.models.segvol.text_encoder import TextEncoder

            self.text_encoder: nn.Module | None = TextEncoder(clip_dir, hidden_size)
        else:
            self.text_encoder = None

    def forward(
        self,
        image: Tensor,
        *,
        boxes: Tensor | None = None,
        points: tuple[Tensor, Tensor] | None = None,
        label: Tensor | None = None,
        text: str | Sequence[str] | None = None,
    ) -> Tensor:
        """Binary logits ``(B, 1, *img_size)``.

        Args:
            image: ``(B, in_channels, *img_size)``.
            boxes: ``(B, 6)`` or ``(B, 1, 6)`` voxel boxes ``(min0, min1, min2, max0, max1,
                max2)`` in the input's axis order.
            points: ``(coords (B, N, 3), labels (B, N))``; labels 1 positive, 0 negative,
                -1 padding.
            label: ``(B, 1, *img_size)``; with ``prompt="box"``/``"points"`` the prompts are
                derived from it (explicit ``boxes``/``points`` win); ignored otherwise.
            text: class name(s) for the text prompt (``text=True`` only).
        """
        if image.ndim != 5 or tuple(image.shape[2:]) != self.img_size:
            raise ValueError(
                f"Expected input spatial size {list(self.img_size)} (SegVol's img_size; the "
                f"trainer must use patch_size = img_size) but got shape {tuple(image.shape)}"
            )
        batch = image.shape[0]
        boxes, points = self._prompts(batch, boxes, points, label)
        text_embedding = self._text(batch, text)
        tokens, _ = self.image_encoder(image)
        embedding = tokens_to_grid(tokens, self.grid)
        sparse, dense = self.prompt_encoder(batch, points, boxes, text_embedding)
        low_res = self.mask_decoder(
            embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, text_embedding
        )
        return F.interpolate(low_res, size=self.img_size, mode="trilinear", align_corners=False)

    def _prompts(
        self,
        batch: int,
        boxes: Tensor | None,
        points: tuple[Tensor, Tensor] | None,
        label: Tensor | None,
    ) -> tuple[Tensor | None, tuple[Tensor, Tensor] | None]:
        if boxes is None and points is None and self.wants_label_prompts:
            if label is None:
                raise ValueError(
                    f"SegVol(prompt={self.prompt!r}) derives its prompts from the label: "
                    "call model(image, label=label)"
                )
            if label.shape[0] != batch or tuple(label.shape[-3:]) != self.img_size:
                raise ValueError(
                    f"Expected label of shape ({batch}, 1, {', '.join(map(str, self.img_size))}) "
                    f"but got {tuple(label.shape)}"
                )
            if self.prompt == "box":
                boxes = boxes_from_label(label)
            else:
                points = points_from_label(label)
        if boxes is not None:
            boxes = boxes.reshape(batch, 6)
        if points is not None and (points[0].shape[0] != batch or points[0].shape[-1] != 3):
            raise ValueError(
                f"Expected point coordinates of shape ({batch}, N, 3) but got "
                f"{tuple(points[0].shape)}"
            )
        return boxes, points

    def _text(self, batch: int, text: str | Sequence[str] | None) -> Tensor | None:
        if text is None:
            text = self.text_prompt
        if text is None:
            return None
        if self.text_encoder is None:
            raise ValueError("Text prompts need SegVol(text=True, clip_dir=...)")
        names = [text] * batch if isinstance(text, str) else list(text)
        if len(names) != batch:
            raise ValueError(f"Expected {batch} text prompts (one per sample) but got {len(names)}")
        return self.text_encoder(names)
