"""Read one case (all image channels + label) as on disk, with every consistency check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segbalance.data.layout import CaseFiles, DatasetLayout
from segbalance.data.nifti import check_same_grid, load_header, read_image, read_label
from segbalance.errors import InputError


@dataclass
class RawCase:
    """One case in on-disk voxel order.

    Attributes:
        image: float32 ``(C, X, Y, Z)`` or None when images were not read.
        label: unsigned integer ``(X, Y, Z)``.
        affine: float64 ``(4, 4)`` voxel-to-world matrix of the label (= image's).
    """

    name: str
    image: np.ndarray | None
    label: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm per array axis, from the affine's column norms."""
        return affine_spacing(self.affine)


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size per array axis: the norms of the affine's first three columns."""
    norms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return tuple(float(round(v, 6)) for v in norms)  # type: ignore[return-value]


def read_case(layout: DatasetLayout, case: CaseFiles, *, images: bool = True) -> RawCase:
    """Load and validate one case.

    Headers of every file are checked first (sizes, shapes, affines, channel count), so
    a bad case fails before its big arrays are read.

    Args:
        images: also read (and check) the image intensities; False reads only the label.

    Raises:
        InputError: ``<case>: <file>: <problem>`` for the first problem found.
    """
    where = case.name
    image_imgs = [load_header(path, where) for path in case.images]
    label_img = load_header(case.label, where)
    ref = image_imgs[0]
    ref_shape = tuple(int(s) for s in ref.shape[:3])
    n_file_channels = _channels_in(image_imgs, layout, where)
    if n_file_channels != layout.n_channels:
        raise InputError(
            where,
            f"image has {n_file_channels} channel(s)",
            f"{layout.n_channels} channel(s) as declared in dataset.json",
        )
    for other in image_imgs[1:]:
        check_same_grid(ref, other, where, "channel", ref_shape)
    check_same_grid(ref, label_img, where, "label", ref_shape)
    label = read_label(label_img, where, layout.classes)
    image = None
    if images:
        arrays = [read_image(img, where) for img in image_imgs]
        if len(arrays) == 1 and arrays[0].ndim == 4:
            image = np.ascontiguousarray(np.moveaxis(arrays[0], -1, 0))
        else:
            image = np.stack([a.reshape(ref_shape) for a in arrays])
    return RawCase(case.name, image, label, np.asarray(label_img.affine, dtype=np.float64))


def _channels_in(imgs: list, layout: DatasetLayout, where: str) -> int:
    if layout.layout == "nnunet_v2":
        for img in imgs:
            if len(img.shape) == 4 and img.shape[3] != 1:
                raise InputError(
                    where, f"channel file has shape {img.shape}", "one 3D volume per channel file"
                )
        return len(imgs)
    shape = imgs[0].shape
    return int(shape[3]) if len(shape) == 4 else 1
