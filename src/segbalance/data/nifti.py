"""Defensive NIfTI reading: every failure becomes one ``InputError`` naming the file.

Checks happen cheapest first: empty file, header, declared size (before any array is
allocated: a voxel limit and, for ``.nii.gz``, the uncompressed size stored in the gzip
footer), then the data itself (corrupt streams, NaN/inf intensities, label values).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from segbalance.errors import InputError

# More voxels than this in one file is refused before reading (a 1024^3 volume); the
# environment variable lets a user with a big machine raise it.
MAX_VOXELS = int(os.environ.get("SEGBALANCE_MAX_VOXELS", str(1024**3)))
# Largest difference between image and label affines still treated as equal (mm).
AFFINE_TOLERANCE = 1e-3

_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, struct.error, MemoryError)


def load_header(path: Path, where: str):
    """Open a NIfTI file lazily and validate its header against the file size.

    Returns:
        the nibabel image (data not read yet).
    """
    import nibabel as nib

    rel = path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(where, f"{rel}: cannot stat ({exc.strerror})", "a readable file") from None
    if size == 0:
        raise InputError(where, f"{rel}: empty file (0 bytes)", "a NIfTI file")
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
        raise InputError(
            where,
            f"{rel}: corrupt or unreadable NIfTI header ({_short(exc)})",
            "a valid .nii/.nii.gz",
        ) from None
    shape = tuple(int(s) for s in img.shape)
    if len(shape) not in (3, 4) or min(shape) <= 0:
        raise InputError(
            where,
            f"{rel}: header declares shape {shape}",
            "a 3D volume or a 4D volume with channels last",
        )
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise InputError(
            where,
            f"{rel}: header declares shape {shape} ({voxels} voxels)",
            f"at most {MAX_VOXELS} voxels (SEGBALANCE_MAX_VOXELS)",
        )
    expected = int(img.header.get_data_offset()) + voxels * img.get_data_dtype().itemsize
    stored = _stored_bytes(path, size, expected)
    if stored < expected:
        raise InputError(
            where,
            f"{rel}: truncated (header declares shape {shape}: {expected} bytes, file holds {stored})",
            "a complete NIfTI file",
        )
    return img


def _stored_bytes(path: Path, size: int, expected: int) -> int:
    """Uncompressed byte count of the file (cheap when the gzip footer agrees)."""
    if not path.name.endswith(".gz"):
        return size
    if size < 18:  # smaller than an empty gzip member
        return 0
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        footer = struct.unpack("<I", fh.read(4))[0]
    # The footer holds the size modulo 2**32 of the last gzip member; when it disagrees
    # (truncated file, multi-member stream, trailing data) count the stream for real,
    # streaming in 1 MiB chunks so nothing of the declared size is allocated.
    if footer == expected % 2**32:
        return expected
    return _count_gzip(path)


def _count_gzip(path: Path) -> int:
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    except _READ_ERRORS:
        return total  # truncated stream: what could be decompressed
    return total


def read_image(img, where: str) -> np.ndarray:
    """Image intensities as float32 ``(*S)`` or ``(*S, C)``; NaN/inf are an error."""
    rel = Path(img.get_filename()).name
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except _READ_ERRORS as exc:
        raise InputError(
            where,
            f"{rel}: corrupt or truncated image data ({_short(exc)})",
            "a readable NIfTI file",
        ) from None
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum()) - n_nan
        what = f"{n_nan} NaN" + (f" and {n_inf} inf" if n_inf else "")
        raise InputError(where, f"{rel}: image has {what} voxels", "finite intensities")
    return data


def read_label(img, where: str, declared: dict[int, str]) -> np.ndarray:
    """Label map ``(*S)`` as the smallest unsigned integer type; checks values."""
    rel = Path(img.get_filename()).name
    try:
        raw = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise InputError(
            where,
            f"{rel}: corrupt or truncated label data ({_short(exc)})",
            "a readable NIfTI file",
        ) from None
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise InputError(where, f"{rel}: label has shape {raw.shape}", "a 3D label map")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise InputError(where, f"{rel}: label has NaN/inf values", "integer label values")
        rounded = np.round(raw)
        bad = raw != rounded
        if bad.any():
            example = float(raw[bad].flat[0])
            raise InputError(
                where, f"{rel}: non-integer label value {example:g}", "integer label values"
            )
        raw = rounded
    elif raw.dtype.kind not in "biu":
        raise InputError(where, f"{rel}: label dtype {raw.dtype}", "an integer label map")
    values = np.unique(raw)
    undeclared = sorted(int(v) for v in values if int(v) not in declared)
    if undeclared:
        raise InputError(
            where,
            f"{rel}: undeclared label value(s) {undeclared[:8]}",
            f"values in {sorted(declared)} as declared in dataset.json",
        )
    dtype = np.uint8 if max(declared) < 256 else np.uint16
    return raw.astype(dtype, copy=False)


def check_same_grid(ref_img, other_img, where: str, what: str, ref_shape: tuple[int, ...]) -> None:
    """Refuse a file whose spatial shape or affine differs from the reference file."""
    shape = tuple(int(s) for s in other_img.shape[:3])
    name = Path(other_img.get_filename()).name
    if shape != ref_shape:
        raise InputError(
            where,
            f"{what} {name} has shape {shape} but the image has {ref_shape}",
            "the same spatial shape",
        )
    diff = float(np.max(np.abs(np.asarray(ref_img.affine) - np.asarray(other_img.affine))))
    if diff > AFFINE_TOLERANCE:
        raise InputError(
            where,
            f"{what} {name} affine differs from the image affine by {diff:.4g}",
            f"affines equal within {AFFINE_TOLERANCE}",
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def nifti_gz_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """A reproducible ``.nii.gz`` file (mm units, qform = sform = ``affine``, gzip mtime 0)."""
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(np.asarray(array), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
