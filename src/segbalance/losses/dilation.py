"""Binary dilation by a ball / ellipsoid (DBCE, METHODS §6), exact and fast.

A structuring element is the union over offsets t of its sections along the last axis
(a kernel of one dimension less, placed at +-t), and dilation distributes over unions:
``dilate(M, K) = OR_t shift_{+-t}(dilate(M, K_t))``. Recursing down to one-dimensional
segments (a few shifted ORs each, radius doubling) turns the dilation by a radius-3 ball
into about 35 boolean shift-ORs instead of a dense convolution (343 products per voxel);
a ball's sections are nested and repeat, and equal sections are dilated once. Exact for
any kernel that is symmetric under flipping each axis (balls, ellipsoids); other kernels
use the convolution. Both are identical to ``scipy.ndimage.binary_dilation``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


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


def _mirror_symmetric(kernel: Tensor) -> bool:
    """True if the kernel is odd-sized and symmetric under flipping each axis alone."""
    if any(n % 2 == 0 for n in kernel.shape):
        return False
    return all(torch.equal(kernel, kernel.flip(a)) for a in range(kernel.ndim))


def _dilate_line(mask: Tensor, axis: int, radius: int) -> Tensor:
    """OR of ``mask`` shifted by -radius..radius along ``axis`` (zero border); new tensor."""
    cur = mask
    covered = 0
    while covered < radius:
        # radius c OR-ed with shifts +-s (s <= c + 1) covers radius c + s without gaps
        step = min(covered + 1, radius - covered)
        n = cur.shape[axis]
        if step >= n:
            break
        new = torch.empty_like(cur)
        # new[x] = cur[x] | cur[x - s] | cur[x + s], written without a clone
        torch.bitwise_or(
            cur.narrow(axis, step, n - step),
            cur.narrow(axis, 0, n - step),
            out=new.narrow(axis, step, n - step),
        )
        new.narrow(axis, 0, step).copy_(cur.narrow(axis, 0, step))
        new.narrow(axis, 0, n - step).bitwise_or_(cur.narrow(axis, step, n - step))
        cur = new
        covered += step
    return cur if cur is not mask else mask.clone()


def _or_shifted(out: Tensor, part: Tensor, axis: int, shift: int) -> None:
    """``out |= part`` shifted by +shift and by -shift along ``axis`` (zero border)."""
    n = part.shape[axis]
    if shift >= n:
        return
    out.narrow(axis, shift, n - shift).bitwise_or_(part.narrow(axis, 0, n - shift))
    out.narrow(axis, 0, n - shift).bitwise_or_(part.narrow(axis, shift, n - shift))


def _dilate_sections(
    mask: Tensor, kernel: Tensor, first_axis: int, memo: dict[bytes, Tensor]
) -> Tensor:
    """Dilation by a mirror-symmetric kernel over tensor axes ``first_axis ...``.

    The kernel is the union over offsets t of its last-axis sections (a (d-1)-dimensional
    kernel placed at +-t), so the dilation is the OR of the section dilations shifted by
    +-t; sections are dilated recursively and equal sections (a ball's are nested and
    often repeat) are computed once. Exact for any such kernel.
    """
    key = bytes(kernel.shape) + kernel.numpy().tobytes()
    if key in memo:
        return memo[key]
    axis = first_axis + kernel.ndim - 1
    half = kernel.shape[-1] // 2
    offsets = [t for t in range(half + 1) if bool(kernel[..., half + t].any())]
    if kernel.ndim == 1 and offsets == list(range(len(offsets))):
        out = _dilate_line(mask, axis, len(offsets) - 1)  # a centred segment
    else:
        out = None
        for t in offsets:
            if kernel.ndim == 1:
                part = mask
            else:
                part = _dilate_sections(mask, kernel[..., half + t], first_axis, memo)
            if out is None:
                out = part.clone() if t == 0 else torch.zeros_like(mask)
                if t == 0:
                    continue
            _or_shifted(out, part, axis, t)
        assert out is not None
    memo[key] = out
    return out


def dilate(masks: Tensor, kernel: Tensor) -> Tensor:
    """Binary dilation of ``(N, *S)`` boolean masks by a boolean structuring element.

    Identical to ``scipy.ndimage.binary_dilation`` with the same structure and a zero
    border: shift-ORs of a box decomposition when the kernel has one (balls and
    ellipsoids do), else a convolution with the kernel; any device.
    """
    if kernel.numel() == 1:
        return masks.clone()
    k = kernel.detach().to("cpu", torch.bool)
    if not _mirror_symmetric(k) or not bool(k[tuple(s // 2 for s in k.shape)]):
        return dilate_by_convolution(masks, kernel)
    out = _dilate_sections(masks.to(torch.bool), k, 1, {})
    return out.clone() if out is masks else out


def dilate_by_convolution(masks: Tensor, kernel: Tensor) -> Tensor:
    """The dense reference: convolution with the kernel (any kernel shape)."""
    conv = F.conv3d if masks.ndim == 4 else F.conv2d
    pad = [s // 2 for s in kernel.shape]
    weight = kernel.to(device=masks.device, dtype=torch.float32)[None, None]
    out = conv(masks.unsqueeze(1).to(torch.float32), weight, padding=pad)
    return out[:, 0] > 0.5
