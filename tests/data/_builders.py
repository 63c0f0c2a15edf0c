"""Write small MSD / nnU-Net v2 datasets from arrays, to corrupt them in tests."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def blob_case(
    seed: int, shape: tuple[int, int, int] = (12, 14, 10), n_classes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A random float32 image and a label with a few cubes of classes 1..n_classes."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 20.0, size=shape).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    for cls in range(1, n_classes + 1):
        for _ in range(2):
            corner = [int(rng.integers(0, s - 3)) for s in shape]
            label[tuple(slice(c, c + 2) for c in corner)] = cls
    return image, label


def make_msd(
    root: Path,
    cases: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    labels: dict[str, str] | None = None,
    modality: dict[str, str] | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """MSD layout: image (X, Y, Z) or (X, Y, Z, C) per case, label (X, Y, Z)."""
    root.mkdir(parents=True, exist_ok=True)
    training = []
    for name, (image, label) in cases.items():
        save_nifti(root / "imagesTr" / f"{name}.nii.gz", image, affine)
        save_nifti(root / "labelsTr" / f"{name}.nii.gz", label, affine)
        training.append(
            {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}
        )
    meta = {
        "name": "tiny",
        "modality": modality or {"0": "MRI"},
        "labels": labels or {"0": "background", "1": "lesion"},
        "numTraining": len(training),
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root


def make_nnunet(
    root: Path,
    cases: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    channels: dict[str, str] | None = None,
    labels: dict[str, int] | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """nnU-Net v2 raw layout: image (C, X, Y, Z) split into CASE_XXXX files."""
    channels = channels or {"0": "FLAIR", "1": "T1"}
    for name, (image, label) in cases.items():
        for c in range(image.shape[0]):
            save_nifti(root / "imagesTr" / f"{name}_{c:04d}.nii.gz", image[c], affine)
        save_nifti(root / "labelsTr" / f"{name}.nii.gz", label, affine)
    meta = {
        "name": "tiny_nnunet",
        "channel_names": channels,
        "labels": labels or {"background": 0, "lesion": 1},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root
