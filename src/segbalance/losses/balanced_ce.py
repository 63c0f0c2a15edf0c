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
import torch.nn.functional as F
from torch import Tensor

from segbalance.losses.base import SegLoss, spec_defaults
from segbalance.losses.inputs import LossInputs

_DBCE = spec_defaults("dbce")


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
        return region_balanced_ce(inputs, inputs.target, max(2, inputs.n_classes))


def ball_kernel(radius: Sequence[float], device: torch.device | None = None) -> Tensor:
    """Boolean ellipsoid ``{u : sum (u_i / r_i)^2 <= 1}`` in voxel offsets (a ball if all r equal).

    Args:
        radius: per-axis radius in voxels (2 or 3 values).

    Returns:
        bool tensor ``(2*floor(r_0)+1, ...)``.
    """
    half = [math.floor(r + 1e-9) for r in radius]
    axes = [torch.arange(-h, h + 1, dtype=torch.float64) for h in half]
    grids = torch.meshgrid(*axes, indexing="ij")
    dist = sum((g / r) ** 2 for g, r in zip(grids, radius, strict=True) if r > 0)
    if isinstance(dist, int):  # every radius 0: the single centre voxel
        dist = torch.zeros([1] * len(radius), dtype=torch.float64)
    return (dist <= 1.0 + 1e-9).to(device=device)


def dilate(masks: Tensor, kernel: Tensor) -> Tensor:
    """Binary dilation of ``(N, *S)`` boolean masks by a boolean structuring element.

    Runs as a convolution with the kernel, on any device (identical to
    ``scipy.ndimage.binary_dilation`` with the same structure and zero border).
    """
    if kernel.numel() == 1:
        return masks.clone()
    conv = F.conv3d if masks.ndim == 4 else F.conv2d
    pad = [s // 2 for s in kernel.shape]
    weight = kernel.to(device=masks.device, dtype=torch.float32)[None, None]
    out = conv(masks.unsqueeze(1).to(torch.float32), weight, padding=pad)
    return out[:, 0] > 0.5


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
