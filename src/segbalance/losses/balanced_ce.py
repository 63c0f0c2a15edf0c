"""Region-balanced CE: ``balanced_ce`` (METHODS §1.2) and ``dbce`` (dilated, METHODS §6).

Both weight every voxel by ``N / (R_+ |r|)`` of the region r it belongs to and take the
weighted mean per sample (= mean over regions of the region-mean CE). For ``balanced_ce``
the regions are the classes; for ``dbce`` a foreground class's region is its mask dilated
by a ball, and the background region is what no dilated mask covers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.binary_block import rowsum
from segbalance.losses.binary_request import BinaryRequest
from segbalance.losses.dilation import ball_kernel, dilate
from segbalance.losses.inputs import LossInputs

__all__ = ["BalancedCELoss", "DilatedBalancedCELoss", "ball_kernel", "dilate"]

_DBCE = spec_defaults("dbce")


def binary_region_balanced_ce(inputs: LossInputs, region: Tensor) -> Tensor:
    """C <= 2 with two regions: ``region`` float 0/1 ``(B, N)`` marks region 1 (foreground
    or its dilation), the rest is region 0. One fused core call gives the per-sample sums
    ``sum m l`` and ``sum m a l``; the weights come from the region counts."""
    factor = inputs.flat_factor  # the ignore mask (these losses take no voxel weights)
    with torch.no_grad():
        total = rowsum(factor) if factor is not None else None
        n1 = rowsum(region if factor is None else region * factor)
        if total is None:
            total = torch.full_like(n1, float(region.shape[1]))
        counts = torch.stack([total - n1, n1], 1)  # exact: sums of 0/1 values
        present = (counts > 0).sum(1, keepdim=True).clamp_min(1)
        weights = torch.where(counts > 0, total[:, None] / (present * counts.clamp_min(1)), 0.0)
    sums = inputs.binary_sums(BinaryRequest(ce=True, aux=region))
    assert sums.ce is not None and sums.ce_aux is not None
    numer = weights[:, 0] * (sums.ce - sums.ce_aux) + weights[:, 1] * sums.ce_aux
    denom = (weights * counts).sum(1)
    return (numer / denom.clamp_min(torch.finfo(inputs.dtype).tiny)).mean()


def region_balanced_ce(inputs: LossInputs, regions: Tensor, n_regions: int) -> Tensor:
    """Mean over samples of ``sum(w_r m l) / sum(w_r m)``, ``w_r = N / (R_+ |r|)``.

    Args:
        regions: int64 ``(B, *S)`` region index in ``[0, n_regions)`` of every voxel.
    """
    batch = regions.shape[0]
    flat_regions = regions.reshape(batch, -1)
    valid = None if inputs.valid_f is None else inputs.valid_f.reshape(batch, -1)
    with torch.no_grad():
        ones = torch.ones_like(flat_regions, dtype=inputs.dtype) if valid is None else valid
        counts = torch.zeros(batch, n_regions, dtype=inputs.dtype, device=inputs.device)
        counts.scatter_add_(1, flat_regions, ones)
        n_total = counts.sum(1, keepdim=True)
        present = (counts > 0).sum(1, keepdim=True).clamp_min(1)
        region_w = torch.where(counts > 0, n_total / (present * counts.clamp_min(1)), 0.0)
        w = region_w.gather(1, flat_regions)
        if valid is not None:
            w = w * valid
    ce = inputs.voxel_ce.reshape(batch, -1)
    per_sample = (w * ce).sum(1) / w.sum(1).clamp_min(torch.finfo(inputs.dtype).tiny)
    return per_sample.mean()


class BalancedCELoss(SegLoss):
    """``balanced_ce``: CE with per-sample inverse-frequency class weights ``N/(C_+ N_c)``.

    C = 1 uses the two classes {background, foreground}. Computes its own weighting, so
    voxel weights are rejected.
    """

    name = "balanced_ce"

    def compute(self, inputs: LossInputs) -> Tensor:
        if inputs.fast_binary:
            return binary_region_balanced_ce(inputs, inputs.binary_y)
        return region_balanced_ce(inputs, inputs.target, max(2, inputs.n_classes))


class DilatedBalancedCELoss(SegLoss):
    """``dbce``: balanced CE whose class regions are the dilated class masks (METHODS §6).

    Options: ``radius`` (voxels, default 3), or ``radius_mm`` with ``spacing`` (mm per
    spatial axis) for a spacing-aware ellipsoid. ``radius=0`` equals ``balanced_ce``.
    """

    name = "dbce"

    def __init__(
        self,
        *,
        radius: float = _DBCE["radius"],
        radius_mm: float | None = _DBCE["radius_mm"],
        spacing: Sequence[float] | None = _DBCE["spacing"],
        ignore_index: int | None = None,
        voxel_weighting: str | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, voxel_weighting=voxel_weighting)
        if radius < 0:
            raise ValueError(f"radius: expected >= 0 voxels but got {radius}")
        if radius_mm is not None and spacing is None:
            raise ValueError("spacing: expected the voxel spacing in mm when radius_mm is set")
        if radius_mm is not None and radius_mm < 0:
            raise ValueError(f"radius_mm: expected >= 0 but got {radius_mm}")
        self.radius = float(radius)
        self.radius_mm = None if radius_mm is None else float(radius_mm)
        self.spacing = None if spacing is None else [float(s) for s in spacing]

    def _kernel(self, n_spatial: int, device: torch.device) -> Tensor:
        if self.radius_mm is not None:
            assert self.spacing is not None
            if len(self.spacing) != n_spatial:
                raise ValueError(
                    f"spacing: expected {n_spatial} values (one per spatial axis) but got "
                    f"{len(self.spacing)}"
                )
            return ball_kernel([self.radius_mm / s for s in self.spacing], device)
        return ball_kernel([self.radius] * n_spatial, device)

    def compute(self, inputs: LossInputs) -> Tensor:
        target = inputs.target
        if inputs.fast_binary:
            # one foreground class: its region is its dilated mask (which contains it)
            with torch.no_grad():
                kernel = self._kernel(target.ndim - 1, inputs.device)
                region = dilate(target == 1, kernel).reshape(target.shape[0], -1)
            return binary_region_balanced_ce(inputs, region.to(inputs.dtype))
        n_fg = max(1, inputs.n_classes - 1)
        with torch.no_grad():
            kernel = self._kernel(target.ndim - 1, inputs.device)
            fg_classes = torch.arange(1, n_fg + 1, device=inputs.device)
            shape = (1, -1) + (1,) * (target.ndim - 1)
            masks = target.unsqueeze(1) == fg_classes.view(shape)  # (B, n_fg, *S)
            batch = target.shape[0]
            dilated = dilate(masks.flatten(0, 1), kernel).view_as(masks)
            sizes = dilated.flatten(2).sum(-1).to(torch.float64)  # (B, n_fg)
            # a voxel covered by several dilated classes joins the smallest one (METHODS §6)
            cand = torch.where(
                dilated, sizes.view(batch, n_fg, *([1] * (target.ndim - 1))), math.inf
            )
            best = cand.argmin(1) + 1
            regions = torch.where(dilated.any(1), best, torch.zeros_like(best))
            # a foreground voxel always belongs to its own class's region
            regions = torch.where(target > 0, target, regions)
        return region_balanced_ce(inputs, regions, n_fg + 1)
