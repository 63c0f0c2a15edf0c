"""Synthetic phantom: a seeded MSD-layout dataset of 3D volumes with many tiny lesions.

Each case is a tissue-like volume (ellipsoidal body with smooth texture, a multiplicative
bias field and Gaussian noise) holding many small ellipsoidal "lesions" whose volumes
follow a lognormal distribution (a few voxels to hundreds). Lesions never touch (they are
separated by at least one voxel), so every lesion is one 26-connected component. Case ``i``
depends only on ``(seed, i)`` and the shape/fraction arguments; files carry no timestamps
or paths (gzip mtime 0), so the same arguments give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from segbalance.data.nifti import nifti_gz_bytes

# Lesion volume distribution (voxels): lognormal with this median and log-sd, clipped.
LESION_MEDIAN_VOXELS = 20.0
LESION_LOG_SD = 1.1
LESION_MIN_VOXELS, LESION_MAX_VOXELS = 3, 500
# Per-case foreground fraction = fg_fraction * lognormal(0, CASE_LOG_SD), mean-preserving,
# so the dataset has a right-skewed fraction distribution like real lesion data.
CASE_LOG_SD = 0.6
# Intensity offset of each lesion class relative to the tissue (class 1 bright, 2 dark, ...).
CLASS_CONTRAST = (0.0, 0.9, -0.6, 1.4, -1.0)


def phantom_case(
    index: int,
    *,
    shape: tuple[int, int, int] = (64, 64, 64),
    fg_fraction: float = 0.002,
    n_classes: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate case ``index``.

    Returns:
        ``(image, label)``: float32 ``(*shape)`` intensities (MR-like, ~0-200) and uint8
        ``(*shape)`` labels in ``0..n_classes``.
    """
    from scipy import ndimage

    _check_args(shape, fg_fraction, n_classes)
    rng = np.random.default_rng([seed, index])
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    semi = rng.uniform(0.78, 0.92, size=3)
    body = (z / semi[0]) ** 2 + (y / semi[1]) ** 2 + (x / semi[2]) ** 2 <= 1.0
    fine = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5)
    coarse = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 5.0)
    texture = 0.10 * fine / (fine.std() + 1e-6) + 0.15 * coarse / (coarse.std() + 1e-6)
    tissue = np.where(body, 1.0 + texture, 0.08 + 0.2 * texture).astype(np.float32)

    label = _place_lesions(rng, shape, body, fg_fraction, n_classes)
    lesion_signal = np.zeros(shape, dtype=np.float32)
    for cls in range(1, n_classes + 1):
        contrast = (
            CLASS_CONTRAST[cls] if cls < len(CLASS_CONTRAST) else 0.4 * cls * (-1) ** (cls + 1)
        )
        # partial-volume edge: the lesion mask blurred slightly, as a scanner would show it
        lesion_signal += contrast * ndimage.gaussian_filter((label == cls).astype(np.float32), 0.6)

    coef = rng.uniform(-0.25, 0.25, size=6).astype(np.float32)
    bias = np.exp(
        coef[0] * z
        + coef[1] * y
        + coef[2] * x
        + coef[3] * z * y
        + coef[4] * y * x
        + coef[5] * x * x
    )
    noise = rng.standard_normal(shape).astype(np.float32) * 0.05
    image = 100.0 * ((tissue + lesion_signal) * bias + noise)
    return image.astype(np.float32), label


def _place_lesions(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    body: np.ndarray,
    fg_fraction: float,
    n_classes: int,
) -> np.ndarray:
    n_voxels = int(np.prod(shape))
    case_fraction = fg_fraction * math.exp(CASE_LOG_SD * rng.standard_normal() - CASE_LOG_SD**2 / 2)
    target = round(case_fraction * n_voxels) if fg_fraction > 0 else 0
    label = np.zeros(shape, dtype=np.uint8)
    occupied = ~body  # lesions stay inside the body and one voxel apart from each other
    placed = 0
    failures = 0
    while placed < target and failures < 200:
        size = float(
            np.clip(
                rng.lognormal(math.log(LESION_MEDIAN_VOXELS), LESION_LOG_SD),
                LESION_MIN_VOXELS,
                LESION_MAX_VOXELS,
            )
        )
        size = max(min(size, target - placed), 1.0)
        cls = 1 if n_classes == 1 else int(rng.integers(1, n_classes + 1))
        box, mask = _ellipsoid(rng, size, shape)
        if mask is None or np.any(occupied[box][mask]):
            failures += 1
            continue
        label[box][mask] = cls
        grown = np.zeros(shape, dtype=bool)
        grown[box] = mask
        lo = [max(s.start - 1, 0) for s in box]
        hi = [min(s.stop + 1, n) for s, n in zip(box, shape, strict=True)]
        region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        occupied[region] |= _dilate26(grown[region])
        placed += int(mask.sum())
    return label


def _ellipsoid(rng: np.random.Generator, volume: float, shape: tuple[int, int, int]):
    """A randomly rotated ellipsoid of about ``volume`` voxels at a random position."""
    radius = (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)
    aspect = np.exp(rng.uniform(-0.35, 0.35, size=3))
    radii = radius * aspect / np.prod(aspect) ** (1.0 / 3.0)
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    extent = math.ceil(radii.max()) + 1
    centre = np.array(
        [rng.uniform(extent, n - 1 - extent) if n > 2 * extent + 1 else (n - 1) / 2 for n in shape]
    )
    lo = np.maximum(np.floor(centre).astype(int) - extent, 0)
    hi = np.minimum(np.floor(centre).astype(int) + extent + 1, shape)
    grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    offsets = np.stack([g - c for g, c in zip(grids, centre, strict=True)], axis=-1)
    local = offsets @ rotation  # coordinates in the ellipsoid's own axes
    mask = ((local / radii) ** 2).sum(axis=-1) <= 1.0
    centre_voxel = tuple(
        int(np.clip(round(c), a, b - 1)) - a for c, a, b in zip(centre, lo, hi, strict=True)
    )
    mask[centre_voxel] = True  # at least one voxel, even for the tiniest lesions
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), mask


def _dilate26(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), dtype=bool))


def _check_args(shape: tuple[int, ...], fg_fraction: float, n_classes: int) -> None:
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape: expected 3 sizes >= 8 but got {tuple(shape)}")
    if not 0.0 <= fg_fraction < 0.5:
        raise ValueError(f"fg_fraction: expected a fraction in [0, 0.5) but got {fg_fraction}")
    if not 1 <= n_classes <= 8:
        raise ValueError(f"n_classes: expected 1..8 foreground classes but got {n_classes}")


def write_phantom(
    out_dir: str | Path,
    *,
    n_cases: int = 8,
    shape: tuple[int, int, int] = (64, 64, 64),
    fg_fraction: float = 0.002,
    n_classes: int = 1,
    seed: int = 0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Path:
    """Write a phantom dataset in MSD layout (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

    Args:
        out_dir: target folder (created; existing phantom files are overwritten).
        n_cases: number of cases ``phantom_000 ...``.
        shape: volume shape in voxels.
        fg_fraction: mean foreground fraction over cases (default 0.2 %).
        n_classes: number of foreground classes.
        seed: case ``i`` depends only on ``(seed, i)`` (and shape, fraction, classes).
        spacing: voxel size in mm written into the affine.

    Returns:
        the dataset folder.
    """
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    _check_args(shape, fg_fraction, n_classes)
    if n_cases < 1:
        raise ValueError(f"n_cases: expected at least 1 case but got {n_cases}")
    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for index in range(n_cases):
        name = f"phantom_{index:03d}"
        image, label = phantom_case(
            index, shape=shape, fg_fraction=fg_fraction, n_classes=n_classes, seed=seed
        )
        (out / "imagesTr" / f"{name}.nii.gz").write_bytes(
            nifti_gz_bytes(image, np.diag([*spacing, 1.0]))
        )
        (out / "labelsTr" / f"{name}.nii.gz").write_bytes(
            nifti_gz_bytes(label, np.diag([*spacing, 1.0]))
        )
        training.append(
            {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}
        )
    names = {"0": "background"}
    names.update(
        {str(c): "lesion" if n_classes == 1 else f"lesion_{c}" for c in range(1, n_classes + 1)}
    )
    meta = {
        "name": "phantom",
        "description": "segbalance synthetic phantom: tissue-like volumes with many small lesions",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": names,
        "numTraining": n_cases,
        "numTest": 0,
        "training": training,
        "test": [],
        "segbalance_phantom": {
            "n_cases": n_cases,
            "shape": list(shape),
            "fg_fraction": fg_fraction,
            "n_classes": n_classes,
            "seed": seed,
            "spacing": list(spacing),
        },
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def phantom_dataset(**kwargs) -> Path:
    """The phantom for ``kwargs`` (see :func:`write_phantom`) in the cache, written once.

    Used for ``data.dataset: phantom`` in configs; lives in
    ``$SEGBALANCE_CACHE/phantom/<hash of the arguments>/``.
    """
    from segbalance.data.cache import cache_root

    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=list).encode()).hexdigest()[:16]
    final = cache_root() / "phantom" / key
    if (final / "dataset.json").is_file():
        return final
    tmp = final.with_name(f"{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write_phantom(tmp, **kwargs)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "dataset.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
