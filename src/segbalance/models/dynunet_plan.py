"""nnU-Net-style kernel sizes and strides for MONAI's DynUNet (pure Python, no torch).

The rule is the one of MONAI's DynUNet tutorial (``get_kernels_strides``), itself a
simplification of nnU-Net's experiment planner: at every level, halve the axes whose
spacing is at most twice the finest spacing and whose size is still >= 8; stop when no
axis can be halved. Axes with a coarse spacing get in-plane (size 1) kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

# An axis is downsampled only while its size is at least this many voxels.
MIN_SIZE_TO_HALVE = 8
# An axis counts as "coarse" while its spacing exceeds the finest one by more than this.
MAX_SPACING_RATIO = 2.0


def dynunet_kernels_strides(
    patch_size: Sequence[int], spacing: Sequence[float]
) -> tuple[list[list[int]], list[list[int]]]:
    """Return ``(kernel_size, strides)`` for DynUNet, one entry per resolution level.

    Args:
        patch_size: spatial size of the network input, e.g. ``(40, 56, 40)``.
        spacing: voxel spacing in mm per axis, same length as ``patch_size``.

    Returns:
        ``kernel_size`` and ``strides``, lists of per-axis lists of equal length
        ``n_levels``; ``strides[0]`` is all ones (the input level). DynUNet's
        ``upsample_kernel_size`` is ``strides[1:]``.

    Raises:
        ValueError: mismatched lengths, non-positive values, or a size that is odd where
            it must be halved (pick a patch size divisible by the total stride).
    """
    sizes = [int(s) for s in patch_size]
    spacings = [float(s) for s in spacing]
    if len(sizes) != len(spacings):
        raise ValueError(
            f"Expected spacing with {len(sizes)} values (one per patch_size axis) "
            f"but got {list(spacing)}"
        )
    if not sizes or min(sizes) < 1 or min(spacings) <= 0:
        raise ValueError(
            f"Expected positive patch_size and spacing but got {list(patch_size)} "
            f"and {list(spacing)}"
        )
    kernels: list[list[int]] = []
    strides: list[list[int]] = []
    original = list(sizes)
    while True:
        finest = min(spacings)
        ratios = [s / finest for s in spacings]
        stride = [
            2 if ratio <= MAX_SPACING_RATIO and size >= MIN_SIZE_TO_HALVE else 1
            for ratio, size in zip(ratios, sizes, strict=True)
        ]
        if all(s == 1 for s in stride):
            break
        for axis, (size, s) in enumerate(zip(sizes, stride, strict=True)):
            if size % s:
                raise ValueError(
                    f"Expected patch_size {original} to be halvable on axis {axis} down to "
                    f"fewer than {MIN_SIZE_TO_HALVE} voxels, but it reaches the odd size "
                    f"{size}; choose a patch size divisible by a power of 2 on that axis"
                )
        kernels.append([3 if ratio <= MAX_SPACING_RATIO else 1 for ratio in ratios])
        strides.append(stride)
        sizes = [size // s for size, s in zip(sizes, stride, strict=True)]
        spacings = [sp * s for sp, s in zip(spacings, stride, strict=True)]
    strides.insert(0, [1] * len(sizes))
    kernels.append([3] * len(sizes))
    return kernels, strides
