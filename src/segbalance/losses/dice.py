"""Overlap (region) losses: ``dice``, ``generalized_dice``, ``tversky``, ``asym``.

Ratios per sample and class, then the mean over (b, c) (METHODS §0); ``batch=True`` sums
over the batch before the ratio. Voxel weights and the ignore mask multiply every sum.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.inputs import LossInputs

_DICE = spec_defaults("dice")
_GDL = spec_defaults("generalized_dice")
_TV = spec_defaults("tversky")
_ASYM = spec_defaults("asym")


def channels(inputs: LossInputs, include_background: bool) -> tuple[Tensor, Tensor]:
    """Probabilities and targets ``(B, C', *S)`` of the channels a region loss scores.

    C = 1: the single (foreground) channel. C >= 2: all classes, or 1..C-1 without background.
    """
    p, y = inputs.probs, inputs.onehot
    if not inputs.binary and not include_background:
        p, y = p[:, 1:], y[:, 1:]
    return p, y


def weighted_sum(x: Tensor, factor: Tensor | None, batch: bool) -> Tensor:
    """Sum of ``x * factor`` over the spatial dims (and the batch if ``batch``): ``(B, C)`` or ``(C,)``."""
    if factor is not None:
        x = x * factor.unsqueeze(1)
    dims = list(range(2, x.ndim))
    if batch:
        dims = [0, *dims]
    return x.sum(dims)


def _select_channels(sums: Tensor, keep_all: bool, batch: bool) -> Tensor:
    if not keep_all:
        sums = sums[:, 1:]
    return sums.sum(0) if batch else sums


def select(sums: Tensor, inputs: LossInputs, include_background: bool, batch: bool) -> Tensor:
    """Keep the scored channels of a ``(B, C)`` sum and optionally sum over the batch."""
    return _select_channels(sums, inputs.binary or include_background, batch)


class DiceLoss(SegLoss):
    """``dice``: ``1 - mean_{b,c} (2 sum(w p y) + s_nr) / (sum(w p^q) + sum(w y) + s_dr)``.

    Defaults follow MONAI ``DiceLoss`` except ``include_background=False`` for C >= 2
    (with < 1 % foreground the background Dice is ~1 and only dilutes; METHODS §1.3).
    ``squared_pred=True`` uses ``p^2`` in the denominator.
    """

    name = "dice"

    def region_needs(self) -> dict[str, bool]:
        return {"squared": self.squared_pred}

    def __init__(
        self,
        *,
        include_background: bool = _DICE["include_background"],
        smooth_nr: float = _DICE["smooth_nr"],
        smooth_dr: float = _DICE["smooth_dr"],
        batch: bool = _DICE["batch"],
        squared_pred: bool = _DICE["squared_pred"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        self.include_background = bool(include_background)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch, self.squared_pred = bool(batch), bool(squared_pred)

    def compute(self, inputs: LossInputs) -> Tensor:
        sums = inputs.region_sums(squared=self.squared_pred)
        keep = (inputs, self.include_background, self.batch)
        intersection = select(sums.intersection, *keep)
        pred = select(sums.pred_sq if self.squared_pred else sums.pred, *keep)
        ground = select(sums.ground, *keep)
        dice = (2 * intersection + self.smooth_nr) / (pred + ground + self.smooth_dr)
        return 1 - dice.mean()


class GeneralizedDiceLoss(SegLoss):
    """``generalized_dice`` (Sudre et al. 2017) with MONAI's weight rules (METHODS §1.4).

    ``w_type="square"``: ``omega = 1/G^2``, infinite weights replaced by the sample's
    largest finite weight; ``w_type="iw"``: ``omega = 1/(1+G^2)`` and squared denominators
    (inverse-weighting paper). C = 1 scores the two channels ``[1-p, p]``.
    """

    name = "generalized_dice"

    def region_needs(self) -> dict[str, bool]:
        return {"squared": self.w_type == "iw"}

    def __init__(
        self,
        *,
        include_background: bool = _GDL["include_background"],
        smooth_nr: float = _GDL["smooth_nr"],
        smooth_dr: float = _GDL["smooth_dr"],
        batch: bool = _GDL["batch"],
        w_type: Literal["square", "iw"] = _GDL["w_type"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if w_type not in ("square", "iw"):
            raise ValueError(f"w_type: expected 'square' or 'iw' but got {w_type!r}")
        self.include_background = bool(include_background)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch, self.w_type = bool(batch), w_type

    def compute(self, inputs: LossInputs) -> Tensor:
        sums = inputs.region_sums(squared=self.w_type == "iw")
        inter, pred, pred_sq, ground = sums.intersection, sums.pred, sums.pred_sq, sums.ground
        if inputs.binary:
            # channels [1 - p, p] vs [1 - y, y]: background sums follow from the totals
            total = inputs.factor_total
            inter = torch.cat([total - pred - ground + inter, inter], 1)
            if pred_sq is not None:
                pred_sq = torch.cat([total - 2 * pred + pred_sq, pred_sq], 1)
            pred, ground = (
                torch.cat([total - pred, pred], 1),
                torch.cat([total - ground, ground], 1),
            )
            keep_bg = True
        else:
            keep_bg = self.include_background
        intersection = _select_channels(inter, inputs.binary or keep_bg, self.batch)
        ground = _select_channels(ground, inputs.binary or keep_bg, self.batch)
        if self.w_type == "iw":
            assert pred_sq is not None
            # sum (p^2 + y^2) with y^2 = y
            denominator = _select_channels(pred_sq, inputs.binary or keep_bg, self.batch) + ground
            w = 1.0 / (1.0 + ground.detach() ** 2)
        else:
            denominator = _select_channels(pred, inputs.binary or keep_bg, self.batch) + ground
            w = 1.0 / ground.detach() ** 2
            infs = torch.isinf(w)
            w = w.masked_fill(infs, 0.0)
            w = w + infs * w.max(dim=-1, keepdim=True).values
        numer = 2.0 * (intersection * w).sum(-1) + self.smooth_nr
        denom = (denominator * w).sum(-1) + self.smooth_dr
        return (1.0 - numer / denom).mean()


class TverskyLoss(SegLoss):
    """``tversky``: ``1 - mean (TP + s) / (TP + alpha FP + beta FN + s)`` (Salehi et al. 2017).

    ``alpha`` weighs false positives, ``beta`` false negatives (MONAI's meaning).
    """

    name = "tversky"

    def region_needs(self) -> dict[str, bool]:
        return {"squared": False}

    def __init__(
        self,
        *,
        alpha: float = _TV["alpha"],
        beta: float = _TV["beta"],
        include_background: bool = _TV["include_background"],
        smooth_nr: float = _TV["smooth_nr"],
        smooth_dr: float = _TV["smooth_dr"],
        batch: bool = _TV["batch"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        self.alpha, self.beta = float(alpha), float(beta)
        self.include_background = bool(include_background)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch = bool(batch)

    def compute(self, inputs: LossInputs) -> Tensor:
        sums = inputs.region_sums()
        keep = (inputs, self.include_background, self.batch)
        tp = select(sums.intersection, *keep)
        fp = select(sums.pred, *keep) - tp
        fn = select(sums.ground, *keep) - tp
        ratio = (tp + self.smooth_nr) / (tp + self.alpha * fp + self.beta * fn + self.smooth_dr)
        return 1 - ratio.mean()


class AsymmetricSimilarityLoss(SegLoss):
    """``asym``: ``1 - mean F_beta``, ``F_beta = (1+b^2) sum(w p y) / sum(w (b^2 y^2 + p^2))``.

    The inverse-weighting reference variant (Hashemi et al. 2018); ``squared=False`` gives the
    original ``(1+b^2) TP / (b^2 sum y + sum p)`` (METHODS §3).
    """

    name = "asym"

    def region_needs(self) -> dict[str, bool]:
        return {"squared": self.squared}

    def __init__(
        self,
        *,
        beta: float = _ASYM["beta"],
        squared: bool = _ASYM["squared"],
        include_background: bool = _ASYM["include_background"],
        smooth_nr: float = _ASYM["smooth_nr"],
        smooth_dr: float = _ASYM["smooth_dr"],
        batch: bool = _ASYM["batch"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        self.beta, self.squared = float(beta), bool(squared)
        self.include_background = bool(include_background)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.batch = bool(batch)

    def compute(self, inputs: LossInputs) -> Tensor:
        sums = inputs.region_sums(squared=self.squared)
        keep = (inputs, self.include_background, self.batch)
        b2 = self.beta**2
        tp = select(sums.intersection, *keep)
        # y is 0/1, so sum w y^2 = sum w y
        pred = select(sums.pred_sq if self.squared else sums.pred, *keep)
        denom = b2 * select(sums.ground, *keep) + pred
        f_beta = ((1 + b2) * tp + self.smooth_nr) / (denom + self.smooth_dr)
        return 1 - f_beta.mean()
