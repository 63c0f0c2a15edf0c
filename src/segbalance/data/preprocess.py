"""Preprocessing of one case: reorientation, intensity normalisation, resampling.

Order (as nnU-Net): reorient to the closest canonical (RAS+) orientation, normalise each
channel, then resample to the target spacing (images cubic spline, labels nearest).
:func:`to_original_space` undoes it for predictions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from segbalance.data.reader import RawCase, affine_spacing

# Bump when preprocessing code changes its output: it is part of every cache key.
PREPROCESS_VERSION = 1
NORMALIZATIONS = ("auto", "zscore", "ct", "none")


@dataclass(frozen=True)
class PreprocessSettings:
    """How cases are turned into training arrays (part of the cache key).

    Attributes:
        target_spacing: mm per axis in canonical (RAS) order, or None to keep the spacing.
        normalization: one scheme for every channel or one per channel: ``auto`` (``ct``
            for channels named CT, else ``zscore``), ``zscore`` (per case and channel),
            ``ct`` (clip to ``ct_window`` then scale to [0, 1]), ``none``.
        ct_window: Hounsfield window for ``ct``.
        reorient: reorient to the closest canonical orientation.
        image_order: spline order of image resampling (labels always nearest).
    """

    target_spacing: tuple[float, float, float] | None = None
    normalization: str | tuple[str, ...] = "auto"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    reorient: bool = True
    image_order: int = 3

    def __post_init__(self) -> None:
        schemes = (
            (self.normalization,) if isinstance(self.normalization, str) else self.normalization
        )
        for scheme in schemes:
            if scheme not in NORMALIZATIONS:
                raise ValueError(
                    f"normalization: expected one of {NORMALIZATIONS} but got {scheme!r}"
                )
        if self.target_spacing is not None and (
            len(self.target_spacing) != 3 or min(self.target_spacing) <= 0
        ):
            raise ValueError(
                f"target_spacing: expected 3 positive mm values but got {self.target_spacing}"
            )
        if self.ct_window[0] >= self.ct_window[1]:
            raise ValueError(
                f"ct_window: expected (low, high) with low < high but got {self.ct_window}"
            )
        if self.image_order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(
                f"image_order: expected a spline order 0..5 but got {self.image_order}"
            )

    def key(self) -> str:
        """Stable hash of the settings and the preprocessing code version."""
        payload = json.dumps(
            {"v": PREPROCESS_VERSION, **asdict(self)}, sort_keys=True, default=list
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def schemes(self, channels: dict[int, str]) -> list[str]:
        """The concrete normalisation of each channel."""
        if isinstance(self.normalization, str):
            chosen = [self.normalization] * len(channels)
        else:
            if len(self.normalization) != len(channels):
                raise ValueError(
                    f"normalization: expected {len(channels)} schemes (one per channel) "
                    f"but got {len(self.normalization)}"
                )
            chosen = list(self.normalization)
        names = [channels[k] for k in sorted(channels)]
        return [
            ("ct" if name.strip().upper() == "CT" else "zscore") if s == "auto" else s
            for s, name in zip(chosen, names, strict=True)
        ]


@dataclass
class PreprocessedArrays:
    """A preprocessed case: image ``(C, *S)`` float32, label ``(*S)`` uint, and metadata."""

    image: np.ndarray
    label: np.ndarray
    meta: dict


def normalize_channel(
    channel: np.ndarray, scheme: str, ct_window: tuple[float, float]
) -> np.ndarray:
    """Normalise one channel ``(*S)``; returns float32."""
    x = channel.astype(np.float32, copy=True)
    if scheme == "zscore":
        mean = float(x.mean(dtype=np.float64))
        std = float(x.std(dtype=np.float64))
        x -= mean
        x /= max(std, 1e-8)
    elif scheme == "ct":
        low, high = ct_window
        np.clip(x, low, high, out=x)
        x -= low
        x /= high - low
    return x


def preprocess_case(
    raw: RawCase, settings: PreprocessSettings, channels: dict[int, str]
) -> PreprocessedArrays:
    """Apply the settings to a case read by :func:`segbalance.data.reader.read_case`."""
    import nibabel as nib

    if raw.image is None:
        raise ValueError(f"raw: expected a case read with images=True but {raw.name} has no image")
    original_shape = tuple(int(s) for s in raw.label.shape)
    if settings.reorient:
        ornt = nib.orientations.io_orientation(raw.affine)
    else:
        ornt = np.array([[0, 1], [1, 1], [2, 1]], dtype=np.float64)
    label = nib.orientations.apply_orientation(raw.label, ornt)
    image = np.stack([nib.orientations.apply_orientation(c, ornt) for c in raw.image])
    affine = raw.affine @ nib.orientations.inv_ornt_aff(ornt, original_shape)
    schemes = settings.schemes(channels)
    image = np.stack(
        [normalize_channel(c, s, settings.ct_window) for c, s in zip(image, schemes, strict=True)]
    )
    reoriented_shape = tuple(int(s) for s in label.shape)
    spacing = affine_spacing(affine)
    if settings.target_spacing is not None:
        target = tuple(float(s) for s in settings.target_spacing)
        new_shape = tuple(
            max(1, round(n * s / t))
            for n, s, t in zip(reoriented_shape, spacing, target, strict=True)
        )
        if new_shape != reoriented_shape:
            image = np.stack([resample(c, new_shape, settings.image_order) for c in image])
            label = resample(label, new_shape, 0)
            affine = affine @ resample_index_affine(reoriented_shape, new_shape)
        spacing = affine_spacing(affine)
    meta = {
        "original_shape": list(original_shape),
        "original_affine": np.asarray(raw.affine).tolist(),
        "orientation": np.asarray(ornt).tolist(),
        "reoriented_shape": list(reoriented_shape),
        "shape": [int(s) for s in label.shape],
        "affine": np.asarray(affine).tolist(),
        "spacing": list(spacing),
        "normalization": schemes,
    }
    return PreprocessedArrays(
        np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label), meta
    )


def resample_index_affine(old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> np.ndarray:
    """4x4 map from new voxel indices to old ones under edge-aligned resampling.

    Voxel centre ``j`` of the new grid sits at ``(j + 0.5) * old / new - 0.5`` in old indices.
    """
    factors = [o / n for o, n in zip(old_shape, new_shape, strict=True)]
    out = np.diag([*factors, 1.0])
    out[:3, 3] = [0.5 * f - 0.5 for f in factors]
    return out


def resample(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """Resize a 3D array to ``shape`` aligning voxel edges (scipy ``grid_mode``).

    ``order=0`` (nearest) keeps integer labels exact.
    """
    from scipy import ndimage

    factors = [n / o for n, o in zip(shape, array.shape, strict=True)]
    if order == 0:
        # nearest via index maps: exact, no spline prefilter, dtype kept
        index = [
            np.minimum(((np.arange(n) + 0.5) / f).astype(np.int64), o - 1)
            for n, f, o in zip(shape, factors, array.shape, strict=True)
        ]
        return array[np.ix_(*index)]
    out = ndimage.zoom(
        array.astype(np.float32, copy=False), factors, order=order, mode="nearest", grid_mode=True
    )
    return out.astype(np.float32, copy=False)


def to_original_space(label: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Map a label map ``(*S)`` in preprocessed space back to the source file's grid.

    Undoes resampling (nearest) and reorientation.

    Returns:
        ``(label, affine)`` with the source label's shape and affine.
    """
    import nibabel as nib

    arr = np.asarray(label)
    reoriented_shape = tuple(meta["reoriented_shape"])
    if tuple(arr.shape) != tuple(meta["shape"]):
        raise ValueError(f"label: expected shape {tuple(meta['shape'])} but got {arr.shape}")
    if tuple(arr.shape) != reoriented_shape:
        arr = resample(arr, reoriented_shape, 0)
    ornt = np.asarray(meta["orientation"], dtype=np.float64)
    back = nib.orientations.apply_orientation(arr, invert_orientation(ornt))
    return np.ascontiguousarray(back), np.asarray(meta["original_affine"], dtype=np.float64)


def invert_orientation(ornt: np.ndarray) -> np.ndarray:
    """The nibabel orientation that undoes ``apply_orientation(x, ornt)``."""
    ornt = np.asarray(ornt, dtype=np.float64)
    inverse = np.zeros_like(ornt)
    for axis, (target, flip) in enumerate(ornt):
        inverse[int(target)] = [axis, flip]
    return inverse
