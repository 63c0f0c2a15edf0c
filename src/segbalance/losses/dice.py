"""Overlap (region) losses: ``dice``, ``generalized_dice``, ``tversky``, ``asym``.

Ratios per sample and class, then the mean over (b, c) (METHODS §0); ``batch=True`` sums
over the batch before the ratio. Voxel weights and the ignore mask multiply every sum.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.binary_request import BinaryRequest
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


class ScoredSums(NamedTuple):
    """Overlap sums of the scored channels, ``(B, C')`` (or ``(C',)`` with ``batch=True``)."""

    intersection: Tensor
    pred: Tensor
    pred_sq: Tensor | None
    ground: Tensor


def region_request(
    inputs: LossInputs, include_background: bool, squared: bool, split_binary: bool = False
) -> BinaryRequest:
    """The binary-core request of an overlap loss (C <= 2): background only if scored.

    ``split_binary``: C = 1 scores the two channels ``[1 - p, p]`` (generalised Dice).
    """
    both = include_background if inputs.n_classes == 2 else split_binary
    return BinaryRequest(region=True, squared=squared, both=both)


def scored_sums(
    inputs: LossInputs,
    include_background: bool,
    batch: bool,
    squared: bool,
    split_binary: bool = False,
) -> ScoredSums:
    """Fused overlap sums of the channels a region loss scores (C = 1: the one channel)."""
    if inputs.fast_binary:
        request = region_request(inputs, include_background, squared, split_binary)
        s = inputs.binary_sums(request)
        parts = (s.inter, s.pred, s.pred_sq, s.ground)
        if batch:
            parts = tuple(None if x is None else x.sum(0) for x in parts)
        return ScoredSums(*parts)  # type: ignore[arg-type]
    sums = inputs.region_sums(squared=squared)
    keep = (inputs, include_background, batch)
    return ScoredSums(
        select(sums.intersection, *keep),
        select(sums.pred, *keep),
        None if sums.pred_sq is None else select(sums.pred_sq, *keep),
        select(sums.ground, *keep),
    )


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

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        return region_request(inputs, self.include_background, self.squared_pred)

    def compute(self, inputs: LossInputs) -> Tensor:
        s = scored_sums(inputs, self.include_background, self.batch, self.squared_pred)
        pred = s.pred_sq if self.squared_pred else s.pred
        dice = (2 * s.intersection + self.smooth_nr) / (pred + s.ground + self.smooth_dr)
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

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        # C = 1 scores the two channels [1 - p, p]
        return region_request(inputs, self.include_background, self.w_type == "iw", True)

    def compute(self, inputs: LossInputs) -> Tensor:
        s = scored_sums(inputs, self.include_background, self.batch, self.w_type == "iw", True)
        intersection, ground = s.intersection, s.ground
        pred, pred_sq = s.pred, s.pred_sq
        if self.w_type == "iw":
            assert pred_sq is not None
            # sum (p^2 + y^2) with y^2 = y
            denominator = pred_sq + ground
            w = 1.0 / (1.0 + ground.detach() ** 2)
        else:
            denominator = pred + ground
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

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        return region_request(inputs, self.include_background, False)

    def compute(self, inputs: LossInputs) -> Tensor:
        s = scored_sums(inputs, self.include_background, self.batch, False)
        tp = s.intersection
        fp = s.pred - tp
        fn = s.ground - tp
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

    def binary_request(self, inputs: LossInputs) -> BinaryRequest:
        return region_request(inputs, self.include_background, self.squared)

    def compute(self, inputs: LossInputs) -> Tensor:
        s = scored_sums(inputs, self.include_background, self.batch, self.squared)
        b2 = self.beta**2
        tp = s.intersection
        # y is 0/1, so sum w y^2 = sum w y
        pred = s.pred_sq if self.squared else s.pred
        denom = b2 * s.ground + pred
        f_beta = ((1 + b2) * tp + self.smooth_nr) / (denom + self.smooth_dr)
        return 1 - f_beta.mean()
