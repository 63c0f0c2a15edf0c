"""Tiny SegVol instances with the published key layout, and checkpoint writers."""

from __future__ import annotations

import torch
from torch import nn

from segbalance.models import SegVol

TINY = dict(
    img_size=(8, 16, 16),
    patch_size=(4, 8, 8),
    hidden_size=32,
    mlp_dim=64,
    num_layers=2,
    num_heads=2,
    decoder_mlp_dim=64,
    decoder_heads=2,
)


def tiny_segvol(seed: int = 0, **overrides: object) -> SegVol:
    """A seeded tiny SegVol (grid (2, 2, 2), width 32) in eval mode."""
    torch.manual_seed(seed)
    model = SegVol(**(TINY | overrides))
    return model.eval()


def tiny_image(seed: int = 0, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, *TINY["img_size"], generator=gen)


def published_state(model: nn.Module, *, drop_cross_attn: bool = True) -> dict[str, torch.Tensor]:
    """The model's tensors as SegVol_v1.pth names them (``module.`` + key).

    ``drop_cross_attn`` leaves out MONAI >= 1.4's ``norm_cross_attn`` tensors, which the
    published file (MONAI 0.9) does not have.
    """
    return {
        "module." + k: v.clone()
        for k, v in model.state_dict().items()
        if not (drop_cross_attn and ".norm_cross_attn." in k)
    }


class Payload:
    """Unpickling this object would create ``marker`` (it must never happen)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))
