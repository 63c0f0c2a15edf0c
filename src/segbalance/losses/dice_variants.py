"""Difficulty-aware Dice variants: ``topk_dice`` (METHODS §4) and ``pm_dice`` (METHODS §5)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.binary_request import BinaryRequest
from segbalance.losses.crossentropy import checked_percent, top_k_count
from segbalance.losses.dice import channels, weighted_sum
from segbalance.losses.inputs import LossInputs
from segbalance.losses.topk import top_k_mask

_TOPK = spec_defaults("topk_dice")
_PM = spec_defaults("pm_dice")


def _select_top(scores: Tensor, valid: Tensor | None, percent: float) -> Tensor:
    """0/1 mask ``(B, N)`` of the k largest scores per row, k from that row's valid count."""
    batch = scores.shape[0]
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
        rows = valid.sum(1).tolist()
    else:
        rows = [scores.shape[1]] * batch
    counts = [top_k_count(percent, n) if n else 0 for n in rows]
    return top_k_mask(scores, counts).to(scores.dtype)


class TopKDiceLoss(SegLoss):
    """``topk_dice``: squared Dice restricted to the K % voxels with the largest CE.

    Per sample, the ``k = max(1, floor(K% N_valid))`` voxels with the largest (detached)
    voxel CE form a constant mask shared by all classes (``selection="per_class"`` ranks
    each channel by its own BCE); Dice ``(2 sum py + s)/(sum p^2 + sum y^2 + s)`` on them.
    Used as ``ce+topk_dice`` (seed poster). Computes its own weighting: no voxel weights.
    """

    name = "topk_dice"

    def __init__(
        self,
        *,
        k: float = _TOPK["k"],
        selection: Literal["shared", "per_class"] = _TOPK["selection"],
        include_background: bool = _TOPK["include_background"],
        smooth_nr: float = _TOPK["smooth_nr"],
        smooth_dr: float = _TOPK["smooth_dr"],
        batch: bool = _TOPK["batch"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if selection not in ("shared", "per_class"):
            raise ValueError(f"selection: expected 'shared' or 'per_class' but got {selection!r}")
        self.k, self.selection = checked_percent(k), selection
        self.include_background = bool(include_background)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch = bool(batch)

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        """C <= 2: the squared overlap sums over the per-sample top-k region, computed in
        the core's block pass (shared and per-class selections are the same set there:
        the two channels' BCEs are equal)."""
        counts = tuple(top_k_count(self.k, n) if n else 0 for n in inputs.row_valid_counts)
        both = inputs.n_classes == 2 and self.include_background
        return BinaryRequest(region=True, squared=True, both=both, region_counts=counts)

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary:
            s = inputs.binary_sums(self.binary_request(inputs))
            inter, den = s.inter, s.pred_sq + s.ground  # y^2 = y
            if self.batch:
                inter, den = inter.sum(0), den.sum(0)
            dice = (2 * inter + self.smooth_nr) / (den + self.smooth_dr)
            return 1 - dice.mean()
        p, y = channels(inputs, self.include_background)
        batch = p.shape[0]
        valid = None if inputs.valid is None else inputs.valid.reshape(batch, -1)
        with torch.no_grad():
            if self.selection == "shared":
                ce = inputs.voxel_ce.detach().reshape(batch, -1)
                mask = _select_top(ce, valid, self.k).view_as(inputs.target).unsqueeze(1)
            else:
                mask = self._per_class_mask(inputs, valid)
        intersection = weighted_sum(p * y * mask, None, self.batch)
        denominator = weighted_sum((p * p + y * y) * mask, None, self.batch)
        dice = (2 * intersection + self.smooth_nr) / (denominator + self.smooth_dr)
        return 1 - dice.mean()

    def _per_class_mask(self, inputs: LossInputs, valid: Tensor | None) -> Tensor:
        if inputs.binary:
            logp = F.logsigmoid(inputs.logits)
            log1mp = F.logsigmoid(-inputs.logits)
        else:
            logp = inputs.log_probs.detach()
            log1mp = torch.log(-torch.expm1(logp).clamp_max(-torch.finfo(logp.dtype).tiny))
        y = inputs.onehot
        bce = -(y * logp + (1 - y) * log1mp)
        if not inputs.binary and not self.include_background:
            bce = bce[:, 1:]
        batch, n_ch = bce.shape[:2]
        masks = [
            _select_top(bce[:, c].reshape(batch, -1), valid, self.k).view(batch, *bce.shape[2:])
            for c in range(n_ch)
        ]
        return torch.stack(masks, 1)


class PixelModulatedDiceLoss(SegLoss):
    """``pm_dice``: Dice with per-voxel modulating factor ``m = |y - sg(p)|^gamma``.

    ``L = 1 - mean_{b,c} (2 sum m y p + eps) / (sum m (y^2 + p^2) + eps)``
    (``squared=False``: ``sum m (y + p)``); ``gamma = 0`` is the squared Dice (METHODS §5).
    """

    name = "pm_dice"

    def __init__(
        self,
        *,
        gamma: float = _PM["gamma"],
        squared: bool = _PM["squared"],
        include_background: bool = _PM["include_background"],
        smooth_nr: float = _PM["smooth_nr"],
        smooth_dr: float = _PM["smooth_dr"],
        batch: bool = _PM["batch"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if gamma < 0:
            raise ValueError(f"gamma: expected >= 0 but got {gamma}")
        self.gamma, self.squared = float(gamma), bool(squared)
        self.include_background = bool(include_background)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch = bool(batch)

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        both = inputs.n_classes == 2 and self.include_background
        return BinaryRequest(region=True, squared=self.squared, both=both, modulate=self.gamma)

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary:
            # the two channels share m: |y_0 - p_0| = |(1 - y) - (1 - p)| = |y - p|
            s = inputs.binary_sums(self.binary_request(inputs))
            parts = [s.inter, s.pred_sq if self.squared else s.pred, s.ground]
            if self.batch:
                parts = [x.sum(0) for x in parts]  # type: ignore[union-attr]
            intersection, pred, ground = parts
            dice = (2 * intersection + self.smooth_nr) / (pred + ground + self.smooth_dr)
            return 1 - dice.mean()
        p, y = channels(inputs, self.include_background)
        # torch.pow(0, 0) = 1, so gamma = 0 gives m = 1 (plain squared Dice)
        m = (y - p.detach()).abs() ** self.gamma
        f = inputs.voxel_factor
        intersection = weighted_sum(m * y * p, f, self.batch)
        denominator = weighted_sum(m * (y * y + p * p if self.squared else y + p), f, self.batch)
        dice = (2 * intersection + self.smooth_nr) / (denominator + self.smooth_dr)
        return 1 - dice.mean()
