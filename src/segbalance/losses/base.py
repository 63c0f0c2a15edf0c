"""Base class of every segbalance loss: validation, precision and voxel weighting."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segbalance.losses.binary_request import BinaryRequest
from segbalance.losses.inputs import LossInputs
from segbalance.losses.spec import LOSS_SPECS, VOXEL_WEIGHTINGS


def spec_defaults(name: str) -> dict[str, Any]:
    """Default options of a registered loss (from the torch-free spec)."""
    return LOSS_SPECS[name].options


class SegLoss(nn.Module, ABC):
    """A segmentation loss ``loss(logits, target, weight=None) -> 0-d tensor``.

    ``logits`` ``(B, C, *S)`` (C = 1 sigmoid, C >= 2 softmax), ``target`` integer ``(B, *S)``
    or ``(B, 1, *S)``, ``weight`` optional voxel weights ``(B, 1, *S)`` or ``(B, *S)``.
    The loss runs in float32 with autocast disabled (float64 input: float64), METHODS §0.
    Subclasses implement :meth:`compute` on a shared :class:`LossInputs`.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, ignore_index: int | None = None, voxel_weighting: str | None = None):
        super().__init__()
        if voxel_weighting is not None and voxel_weighting not in VOXEL_WEIGHTINGS:
            raise ValueError(
                f"voxel_weighting: expected None or one of {list(VOXEL_WEIGHTINGS)} but got "
                f"{voxel_weighting!r}"
            )
        if voxel_weighting is not None and not self.accepts_weight:
            raise ValueError(
                f"voxel_weighting: {self.name!r} computes its own weighting and does not accept "
                f"voxel weights (got voxel_weighting={voxel_weighting!r})"
            )
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.voxel_weighting = voxel_weighting

    @property
    def accepts_weight(self) -> bool:
        return LOSS_SPECS[self.name].accepts_weight

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is not None and not self.accepts_weight:
            raise ValueError(
                f"weight: {self.name!r} computes its own weighting and does not accept voxel "
                "weights (expected weight=None)"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            inputs = LossInputs(logits, target, weight, self.ignore_index)
            if weight is None and self.voxel_weighting is not None:
                inputs = inputs.with_weight(inverse_lesion_weight_tensor(inputs))
            return self.compute(inputs)

    @abstractmethod
    def compute(self, inputs: LossInputs) -> Tensor:
        """The loss of one validated batch (subclasses implement the formula)."""

    def region_needs(self) -> dict[str, bool] | None:
        """What this term reads from the fused :meth:`LossInputs.region_sums` (None: nothing).

        A compound requests the union once, so e.g. ``dice+ce`` runs one softmax.
        """
        return None

    def binary_request(self, inputs: LossInputs) -> BinaryRequest | None:
        """What this term reads from the fused binary core (C <= 2), or None (nothing).

        A compound merges its terms' requests, so e.g. ``balanced`` runs one core call.
        """
        return None

    def extra_repr(self) -> str:
        opts = {k: getattr(self, k) for k in LOSS_SPECS[self.name].options if hasattr(self, k)}
        return ", ".join(f"{k}={v!r}" for k, v in opts.items() if k not in ("fractions",))


def inverse_lesion_weight_tensor(inputs: LossInputs) -> Tensor:
    """Inverse lesion weights ``(B, *S)`` of a validated batch (labels the patch itself)."""
    from segbalance.losses.weighting import inverse_lesion_weights

    labels = inputs.target.detach()
    if inputs.valid is not None:
        # ignored voxels: background for labelling, weight 0 (METHODS §0/§3)
        labels = torch.where(inputs.valid, labels, torch.full_like(labels, -1))
        w = inverse_lesion_weights(labels, batched=True, ignore_index=-1)
    else:
        w = inverse_lesion_weights(labels, batched=True)
    return w.to(device=inputs.device, dtype=inputs.dtype)
